"""`patchbay serve`: run the gateway that hosted platforms and other clients call."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from patchbay._errors import SecretError
from patchbay.cli._app import CONFIG_HELP, app, fail, load_or_exit
from patchbay.gateway import Credentials, run
from patchbay.http import SecretResolver
from patchbay.spec import Config


def _check_secrets(cfg: Config) -> None:
    """Resolve the gateway's secrets now, so a missing one is a one-line reason, not a trace."""
    creds = Credentials(cfg.gateway.auth, SecretResolver(base_dir=cfg.base_dir))
    try:
        asyncio.run(creds.load())
    except SecretError as exc:
        fail(f"gateway.auth: {exc}")
    if not creds.configured:
        logging.getLogger("patchbay.gateway").warning(
            "gateway.auth has no bearer, no platform secret and open is false: "
            "every caller will be refused"
        )


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
    cfg = load_or_exit(config)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    _check_secrets(cfg)
    run(cfg, host=host, port=port, graceful_s=graceful, log_level=log_level)
