"""The `patchbay` command: shared app object and helpers for every subcommand."""

from __future__ import annotations

import asyncio
import sys
from typing import NoReturn

import typer

from patchbay._errors import ConfigError, ConfigErrors
from patchbay.http import check_secrets
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


def _used_by(location: str, integration: str, tenant: str | None) -> bool:
    """Whether a secret at `location` is one a call of `integration` as `tenant` may use."""
    own = f"integrations.{integration}."
    tenants = f"{own}tenants."
    if not location.startswith(own):
        return False
    return not location.startswith(tenants) or location.startswith(f"{tenants}{tenant}.")


def secrets_or_exit(
    cfg: Config, *, integration: str | None = None, tenant: str | None = None
) -> None:
    """Resolve every secret reference now, or print each that fails (by location) and exit 2.

    Without this a missing secret would pass start-up and fail every later call instead. With
    `integration`, only the references a call of it (as `tenant`) may use count.
    """
    errors = asyncio.run(check_secrets(cfg))
    if integration is not None:
        errors = [e for e in errors if _used_by(e.location, integration, tenant)]
    for err in errors:
        print(f"patchbay: {err}", file=sys.stderr)
    if errors:
        raise typer.Exit(2)
