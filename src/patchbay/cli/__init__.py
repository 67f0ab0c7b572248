"""The `patchbay` command line."""

# Importing each command module registers its commands on `app` (@app.command).
from patchbay.cli import (  # noqa: F401
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

plain_help(app)  # after every command module above has registered its commands


def main() -> None:
    """Entry point of the `patchbay` script."""
    app(prog_name="patchbay")  # the same name in help when run as `python -m patchbay.cli`
