"""`patchbay mcp`: serve every tool over MCP on stdin/stdout."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from patchbay.cli._app import CONFIG_HELP, app, load_or_exit, observe_or_exit, secrets_or_exit

if TYPE_CHECKING:
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
    secrets_or_exit(loaded)  # an MCP client shows stderr once; a failure per call helps no one
    observing = observe_or_exit(loaded, logs=True, runtime=True)  # logs: stderr, not stdout
    # Imported when the command runs, for start-up time (see cli._app).
    import asyncio

    asyncio.run(_serve(loaded, call_id, observing))


async def _serve(config: Config, call_id: str | None, observing: dict[str, Any]) -> None:
    # Imported here, not at the top: the MCP SDK takes about half of the CLI's start-up time,
    # which every other command (and --help) would otherwise pay.
    from patchbay.integrations._mcp import serve_stdio
    from patchbay.runtime import ToolRuntime

    async with ToolRuntime(config, **observing) as runtime:
        await serve_stdio(runtime, call_id=call_id)
