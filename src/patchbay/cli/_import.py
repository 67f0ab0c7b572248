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


def _write(text: str, output: str | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")


@import_app.command()
def graphql(
    schema: Annotated[
        str,
        typer.Option(metavar="SCHEMA", help="The schema: SDL (.graphql) or introspection JSON"),
    ],
    operations: Annotated[
        str, typer.Option(metavar="OPS.graphql", help="Named queries and mutations, one tool each")
    ],
    endpoint: Annotated[
        str, typer.Option(metavar="URL", help="The GraphQL endpoint, e.g. https://api/graphql")
    ],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write here instead of stdout")
    ] = None,
    integration: Annotated[
        str | None, typer.Option(help="The integration's name (default: from the schema file)")
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(metavar="PATTERN", help="operation, field or query|mutation glob"),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(metavar="PATTERN", help="operation, field or query|mutation glob"),
    ] = None,
) -> None:
    """A tool per named operation, its variables as parameters; skips are listed on stderr."""
    # lazy: start-up time (graphql-core is only needed here)
    from urllib.parse import urlsplit

    from patchbay.importers import UnreadableSpec
    from patchbay.importers._graphql import import_graphql, load_graphql

    try:
        source = load_graphql(schema, operations)
    except UnreadableSpec as exc:
        fail(str(exc))
    parts = urlsplit(endpoint)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or re.search(r"[{}$\s]", endpoint)
    ):
        fail(f"--endpoint {endpoint!r}: give the absolute http(s) URL of the GraphQL endpoint")
    if integration is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", integration):
        fail(f"--integration {integration!r}: use letters, digits, '_' or '-', a letter first")
    result = import_graphql(
        source, endpoint, integration=integration, include=include or (), exclude=exclude or ()
    )
    for skipped in result.skipped:
        print(f"skipped: {skipped}", file=sys.stderr)
    _write(result.to_yaml(), output)
    tools = len(result.config["tools"])
    target = output or "patchbay.yaml"
    saved = f"wrote {target}" if output else f"save it as {target}"
    print(
        f"patchbay: {tools} tools, {len(result.skipped)} skipped; {saved}, then run: "
        f"patchbay validate -c {target}",
        file=sys.stderr,
    )
    if not tools:
        print("patchbay: no operation was selected: check --include and --exclude", file=sys.stderr)


plain_help(import_app)
