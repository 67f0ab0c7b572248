"""`patchbay docs`: a page per integration, in Markdown or self-contained HTML."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from patchbay.cli._app import CONFIG_HELP, app, fail, load_or_exit

if TYPE_CHECKING:
    from patchbay.docs import Interaction
    from patchbay.spec import Config


@app.command()
def docs(
    config: Annotated[str, typer.Option("--config", "-c", help=CONFIG_HELP)] = "patchbay.yaml",
    output: Annotated[
        str, typer.Option("--output", "-o", metavar="DIR", help="Folder for the pages")
    ] = "patchbay-docs",
    fmt: Annotated[Literal["md", "html"], typer.Option("--format", "-f", help="md or html")] = "md",
    scenarios: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="A scenario file whose steps become example calls"),
    ] = None,
) -> None:
    """Write one page per integration: each tool's use, inputs, outputs, errors and limits."""
    # lazy: start-up time
    from patchbay.docs import render_html, render_markdown

    cfg = load_or_exit(config)
    interactions = _interactions(scenarios, cfg) if scenarios else []
    render = render_html if fmt == "html" else render_markdown
    folder = Path(output)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in render(cfg, interactions).items():
            (folder / name).write_text(text, encoding="utf-8")
            print(folder / name)
    except OSError as exc:
        fail(f"cannot write to {folder}: {exc.strerror or exc}")


def _interactions(path: str, cfg: Config) -> list[Interaction]:
    """A scenario file's scenarios as the docs' example interactions; bad input exits 2."""
    # lazy: start-up time (scenarios bring the testing helpers)
    import sys

    from patchbay._errors import ConfigErrors
    from patchbay.docs import Interaction, Step
    from patchbay.testing._scenarios import load_scenarios

    try:
        loaded = load_scenarios(path, cfg)
    except ConfigErrors as exc:
        for err in exc.errors:
            print(f"patchbay: {err}", file=sys.stderr)
        raise typer.Exit(2) from None
    return [
        Interaction(
            name=scenario.name,
            description=scenario.description,
            caller=scenario.call.caller,
            steps=tuple(
                Step(s.tool, dict(s.args), dict(s.expect), tuple(s.fault_mappings))
                for s in scenario.steps
            ),
        )
        for scenario in loaded.scenarios.values()
    ]
