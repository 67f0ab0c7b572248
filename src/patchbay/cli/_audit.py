"""`patchbay audit verify FILE...`: check that an audit trail's hash chain is intact."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from patchbay.cli._app import CONFIG_HELP, app, fail, load_or_exit, plain_help

audit_app = typer.Typer(
    name="audit",
    help="Check the audit trail.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@audit_app.command()
def verify(
    files: Annotated[
        list[Path], typer.Argument(help="The trail's files (rotated ones too)", metavar="FILE")
    ],
    key_env: Annotated[
        str | None,
        typer.Option("--key-env", metavar="NAME", help="Variable holding the trail's HMAC key"),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option("--config", "-c", help=f"{CONFIG_HELP}; its observe.audit.key is used"),
    ] = None,
    partial: Annotated[
        bool, typer.Option(help="The earliest file may continue files archived elsewhere")
    ] = False,
) -> None:
    """Exit 0 when the chain is intact, 1 naming the first line edited, removed or out of order."""
    # lazy: start-up time
    from patchbay.observe._chain import verify as verify_chain

    key = _key(key_env, config)
    for path in files:
        if not path.is_file():
            fail(f"cannot read {path}: no such file")
    try:
        count, broken = verify_chain(files, key, partial=partial)
    except OSError as exc:
        fail(f"cannot read the trail: {exc.strerror}")
    if broken is not None:
        print(f"patchbay: audit trail broken at {broken}", file=sys.stderr)
        raise typer.Exit(1)
    keyed = "keyed" if key is not None else "unkeyed"
    print(f"ok: {count} lines intact ({keyed}) in {len(files)} file(s)")


def _key(key_env: str | None, config: str | None) -> bytes | None:
    """The HMAC key: from --key-env, else from the config's observe.audit.key, else none."""
    if key_env is not None and config is not None:
        fail("give --key-env or --config, not both")
    if key_env is not None:
        value = os.environ.get(key_env)
        if not value:
            fail(f"--key-env {key_env}: the variable is not set")
        return value.encode()
    if config is None:
        return None
    # lazy: start-up time
    import asyncio

    from patchbay._errors import SecretError
    from patchbay.http import build_resolver

    cfg = load_or_exit(config)
    audit = cfg.observe.audit
    if audit is None or audit.key is None:
        return None
    try:
        secret = asyncio.run(build_resolver(cfg).resolve(audit.key))
    except SecretError as exc:
        fail(f"observe.audit.key: {exc}")
    return secret.reveal().encode()


plain_help(audit_app)
app.add_typer(audit_app)
