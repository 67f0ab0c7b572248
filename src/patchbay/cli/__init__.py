"""The `patchbay` command line."""

from patchbay.cli import _commands, _demo
from patchbay.cli._app import app

__all__ = ["app", "main"]

_COMMANDS = (_commands, _demo)  # imported for their @app.command registrations


def main() -> None:
    """Entry point of the `patchbay` script."""
    app()
