"""Handlers of the gateway tests' small config: they show what the gateway handed the runtime."""

from __future__ import annotations

import asyncio
from typing import Any

from patchbay import HandlerContext, UpstreamUnavailable


async def echo(ctx: HandlerContext, text: str = "") -> dict[str, Any]:
    """Repeat the text with the call it arrived on."""
    call = ctx.call
    return {"text": text, "call_id": call.id, "caller": call.caller, "tenant": call.tenant}


async def slow(ctx: HandlerContext, seconds: float = 0.3) -> dict[str, Any]:
    """Take a while, then answer."""
    await asyncio.sleep(seconds)
    return {"slept": seconds, "call_id": ctx.call.id}


async def broken(ctx: HandlerContext) -> dict[str, Any]:
    """Fail the way an unreachable upstream does."""
    raise UpstreamUnavailable("The system is not answering.")
