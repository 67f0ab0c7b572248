"""`patchbay demo`: an example billing call, end to end, against the example API on loopback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from patchbay.cli._app import app, fail


def _example() -> Path:
    """The billing example: beside the source tree (any working folder), else under this one."""
    # src/patchbay/cli/_demo.py -> the repository root is three parents up.
    beside = Path(__file__).resolve().parents[3] / "examples" / "billing"
    return beside if (beside / "patchbay.yaml").is_file() else Path("examples/billing")


@app.command()
def demo(
    folder: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Folder of the example (patchbay.yaml, conversation.py); "
            "default: the billing example",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Play an example billing call against the example billing API on loopback."""
    # Imported when the command runs: the player brings the runtime and a web server.
    import asyncio

    from patchbay.cli._play import run_demo

    folder = folder or _example()
    if not (folder / "patchbay.yaml").exists():
        fail(f"{folder}/patchbay.yaml not found; pass --dir FOLDER")
    sys.path.insert(0, str(folder.resolve()))
    raise typer.Exit(asyncio.run(run_demo(folder)))
