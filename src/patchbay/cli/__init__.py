"""The `patchbay` command line."""

from patchbay.cli import _commands, _demo, _export, _mcp, _serve
from patchbay.cli._app import app

__all__ = ["app", "main"]

_COMMANDS = (_commands, _demo, _export, _mcp, _serve)  # imported for their @app.command


def main() -> None:
    """Entry point of the `patchbay` script."""
    app()
