"""The `patchbay` command: shared app object and helpers for every subcommand."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from patchbay._errors import ConfigError, ConfigErrors
from patchbay.spec import Config, load_config

app = typer.Typer(
    name="patchbay",
    help="Connect voice agents to your own REST APIs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CONFIG_HELP = "Path to patchbay.yaml"


def fail(message: str) -> NoReturn:
    """Print a one-line reason to stderr and exit 2 (bad config, unknown tool, bad input)."""
    print(f"patchbay: {message}", file=sys.stderr)
    raise typer.Exit(2)


def load_or_exit(path: str) -> Config:
    """Load a config, or print every mistake with its location and exit 2."""
    try:
        return load_config(path)
    except ConfigErrors as exc:
        for err in exc.errors:
            print(f"patchbay: {err}", file=sys.stderr)
        raise typer.Exit(2) from None
    except ConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
