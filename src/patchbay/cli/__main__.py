"""`python -m patchbay.cli`: the same as the `patchbay` command."""

from patchbay.cli import main

main()
