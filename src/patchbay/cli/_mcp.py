"""`patchbay mcp`: serve every tool over MCP on stdin/stdout."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from patchbay.cli._app import CONFIG_HELP, app, load_or_exit
from patchbay.integrations._mcp import serve_stdio
from patchbay.runtime import ToolRuntime
from patchbay.spec import Config


@app.command("mcp")
def mcp_command(
    config: Annotated[str, typer.Option("--config", "-c", help=CONFIG_HELP)] = "patchbay.yaml",
    call_id: Annotated[
        str | None,
        typer.Option("--call-id", help="Call id for requests that name none (default: new)"),
    ] = None,
) -> None:
    """Serve every tool over MCP on stdin/stdout, for desktop assistants and agent SDKs."""
    loaded = load_or_exit(config)
    asyncio.run(_serve(loaded, call_id))


async def _serve(config: Config, call_id: str | None) -> None:
    async with ToolRuntime(config) as runtime:
        await serve_stdio(runtime, call_id=call_id)
