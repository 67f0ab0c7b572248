"""The `patchbay` command line."""

from patchbay.cli import (
    _audit,
    _commands,
    _demo,
    _docs,
    _export,
    _import,
    _mcp,
    _mock,
    _serve,
    _test,
)
from patchbay.cli._app import app, plain_help

__all__ = ["app", "main"]

_COMMANDS = (
    _audit,
    _commands,
    _demo,
    _docs,
    _export,
    _import,
    _mcp,
    _mock,
    _serve,
    _test,
)  # for @app.command
plain_help(app)  # after every command module above has registered its commands


def main() -> None:
    """Entry point of the `patchbay` script."""
    app(prog_name="patchbay")  # the same name in help when run as `python -m patchbay.cli`
