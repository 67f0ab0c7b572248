"""`patchbay export vapi|retell|elevenlabs`: tool configurations to paste into a platform."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Literal

import typer

from patchbay.cli._app import CONFIG_HELP, app, fail, load_or_exit

# The values of gateway.Platform, spelled out so the CLI need not import the gateway (and the
# MCP SDK with it) to start; a test keeps the two equal.
PlatformName = Literal["vapi", "retell", "elevenlabs"]


@app.command()
def export(
    platform: Annotated[PlatformName, typer.Argument(help="The platform", metavar="PLATFORM")],
    config: Annotated[str, typer.Option("--config", "-c", help=CONFIG_HELP)] = "patchbay.yaml",
    url: Annotated[
        str | None, typer.Option(help="The gateway's public URL (default: gateway.public_url)")
    ] = None,
) -> None:
    """Print every tool as the platform's tool configuration JSON, calling the gateway."""
    # Imported here, not at the top: see PlatformName.
    from patchbay.gateway import Platform, credential_hint, export_platform

    cfg = load_or_exit(config)
    base = url or cfg.gateway.public_url
    if not base:
        fail("no gateway URL: pass --url https://... or set gateway.public_url in the config")
    if not base.startswith(("http://", "https://")):
        fail(f"the gateway URL must start with http:// or https://, not {base!r}")
    print(json.dumps(export_platform(cfg.tools.values(), Platform(platform), base), indent=2))
    # On stderr so stdout stays pure JSON: no secret is ever printed, so say where it goes.
    print(f"patchbay: {credential_hint(Platform(platform))}", file=sys.stderr)
