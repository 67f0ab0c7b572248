"""`patchbay serve`: run the gateway that hosted platforms and other clients call."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from patchbay.cli._app import CONFIG_HELP, app, load_or_exit, observe_or_exit, secrets_or_exit


@app.command()
def serve(
    config: Annotated[str, typer.Option("--config", "-c", help=CONFIG_HELP)] = "patchbay.yaml",
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8080,
    graceful: Annotated[
        int, typer.Option(help="Seconds calls in flight get to finish on shutdown")
    ] = 30,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Serve the gateway: /tools, /vapi, /retell, /elevenlabs, /calls, /metrics, /healthz."""
    # Imported here, not at the top: the gateway brings the MCP SDK and the ASGI stack, about
    # half of the CLI's start-up time, which every other command (and --help) would pay.
    from patchbay.gateway import run

    cfg = load_or_exit(config)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    secrets_or_exit(cfg)  # every reference, integrations' too: fail now, not on every call
    # Logging is set up above, by --log-level.
    observing = observe_or_exit(cfg, runtime=True, serves_metrics=True)
    # A gateway no one may call is said once, at start, by the gateway itself.
    # SIGHUP re-reads the config file and its secrets without dropping calls in flight.
    run(
        cfg,
        host=host,
        port=port,
        graceful_s=graceful,
        log_level=log_level,
        config_path=config,
        **observing,
    )
