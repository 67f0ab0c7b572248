"""`patchbay mock`: serve a mock of every API the config declares, for local runs and tests."""

from __future__ import annotations

from typing import Annotated

import typer

from patchbay.cli._app import CONFIG_HELP, app, fail, load_or_exit


@app.command()
def mock(
    config: Annotated[str, typer.Option("--config", "-c", help=CONFIG_HELP)] = "patchbay.yaml",
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port of the first integration; the next ones count up from it")
    ] = 8043,
    openapi: Annotated[
        str | None,
        typer.Option(metavar="SPEC", help="An OpenAPI document whose examples answer too"),
    ] = None,
) -> None:
    """Serve every declared operation from examples, OpenAPI examples or minimal bodies."""
    # lazy: start-up time
    import asyncio
    import contextlib

    from patchbay.testing import MockApi

    cfg = load_or_exit(config)
    try:
        api = MockApi(cfg, openapi=openapi, host=host, port=port)
    except ValueError as exc:
        fail(str(exc))

    async def run() -> None:
        try:
            await api.start()
        except OSError as exc:
            last = port + len(cfg.integrations) - 1
            ports = f"{port}" if last == port else f"{port}-{last}"
            fail(f"cannot listen on {host}:{ports}: {exc.strerror or exc}")
        try:
            for name, url in api.urls.items():
                print(f"{name}: {url} ({len(api.routes(name))} operations)")
            print(
                f"faults: POST or DELETE {api.url}/__patchbay/faults (each port has its own); "
                "Ctrl-C stops",
                flush=True,
            )
            await asyncio.Event().wait()
        finally:
            await api.stop()

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it stops
        asyncio.run(run())
