"""`patchbay import openapi`: a curated, commented patchbay.yaml from an API's own description."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from patchbay.cli._app import app, fail, plain_help

import_app = typer.Typer(
    name="import",
    help="Write a patchbay.yaml from an API's own description.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(import_app, name="import")

Patterns = Annotated[
    list[str] | None,
    typer.Option(
        metavar="PATTERN",
        help="operationId, tag or path glob (repeatable), e.g. 'get*', billing, '/customers/*'",
    ),
]


@import_app.command()
def openapi(
    spec: Annotated[
        str, typer.Argument(metavar="SPEC", help="OpenAPI 3.0/3.1 or Swagger 2.0, JSON or YAML")
    ],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write here instead of stdout")
    ] = None,
    integration: Annotated[
        str | None, typer.Option(help="The integration's name (default: from the API's title)")
    ] = None,
    include: Patterns = None,
    exclude: Patterns = None,
) -> None:
    """A tool per selected operation; what cannot be expressed is listed on stderr."""
    # lazy: start-up time
    from patchbay.importers import UnreadableSpec, import_openapi, load_document

    try:
        doc, uri = load_document(spec)
    except UnreadableSpec as exc:
        fail(str(exc))
    if integration is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", integration):
        fail(f"--integration {integration!r}: use letters, digits, '_' or '-', a letter first")
    result = import_openapi(
        doc, uri=uri, integration=integration, include=include or (), exclude=exclude or ()
    )
    for skipped in result.skipped:
        print(f"skipped: {skipped}", file=sys.stderr)
    text = result.to_yaml()
    tools = len(result.config["tools"])
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror or exc}")
    target = output or "patchbay.yaml"
    saved = f"wrote {target}" if output else f"save it as {target}"
    print(
        f"patchbay: {tools} tools, {len(result.skipped)} skipped; {saved}, set "
        f"{', '.join(result.env)}, then run: patchbay validate -c {target}",
        file=sys.stderr,
    )
    if not tools:
        print("patchbay: no operation was selected: check --include and --exclude", file=sys.stderr)


plain_help(import_app)
