"""The demo's second scene: a payment that clears mid-call, announced by a signed webhook.

The billing API answers `create_payment_async` with "processing" and, a moment later, posts a
Standard Webhooks-signed `payment.succeeded` to the agent process's webhook endpoint, which hands
it to the runtime (`ToolRuntime.accept_webhook`); the runtime finds the call by the payment's
id and delivers the words as a call event (`ToolRuntime.call_events`), which the agent speaks.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Self

from aiohttp import web
from rich.markup import escape

from patchbay.runtime import CallEvent, ToolRuntime
from patchbay.spec import CallContext, load_config
from patchbay.testing import BillingServer

ASYNC_CONFIG = "async.yaml"


def new_webhook_secret() -> str:
    """A fresh Standard Webhooks secret: `whsec_` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def second_scene(folder: Path, script: ModuleType) -> bool:
    """Whether the example has the asynchronous scene: its config and its script."""
    return (folder / ASYNC_CONFIG).is_file() and hasattr(script, "play_async")


class WebhookDoor:
    """The agent process's webhook endpoint on loopback: `POST /webhooks/{source}`, handed to
    the runtime once it exists (until then 503, which senders retry)."""

    def __init__(self, show: Any) -> None:
        self.runtime: ToolRuntime | None = None
        self._show = show
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _accept(self, request: web.Request) -> web.Response:
        source = request.match_info["source"]
        if self.runtime is None:
            return web.json_response({"error": {"code": "unavailable"}}, status=503)
        body = await request.read()
        status, answer = await self.runtime.accept_webhook(source, dict(request.headers), body)
        try:
            kind = json.loads(body).get("type")
        except (ValueError, AttributeError):
            kind = None
        shown = escape(f"← POST /webhooks/{source}  {kind}  {status}")
        self._show(f"      [dim]{shown}[/dim]")
        return web.json_response(answer, status=status)

    def endpoint(self, source: str) -> str:
        """Where a source's sender posts."""
        return f"{self.url}/webhooks/{source}"

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/webhooks/{source}", self._accept)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def play_second_scene(
    folder: Path,
    script: ModuleType,
    server: BillingServer,
    door: WebhookDoor,
    secret: str,
    *,
    sinks: list[Any],
    **show: Any,
) -> bool:
    """Play the asynchronous payment call; True if the caller heard it clear."""
    env = {**os.environ, "BILLING_URL": server.url, "BILLING_API_KEY": server.api_key}
    os.environ["BILLING_WEBHOOK_SECRET"] = secret  # the env: secret provider reads it
    config = load_config(folder / ASYNC_CONFIG, env=env)
    async with ToolRuntime(config, sinks=sinks) as runtime:
        door.runtime = runtime
        call = CallContext(id="demo-call-2", caller="+15559876543")
        await runtime.start_call(call)
        try:
            # say, show_call, show_result, show_event: the screen's printers
            transcript = await script.play_async(runtime, call, **show)
        finally:
            await runtime.end_call(call)
            door.runtime = None
    heard = [e for e in transcript.events if e.event == "payment.succeeded" and e.say]
    return all(r.ok for r in transcript.results) and len(heard) == 1


def show_event(print_line: Any) -> Any:
    """A printer of call events for the demo's screen."""

    def show(event: CallEvent) -> None:
        print_line(
            f"  [magenta]{escape(f'[call event {event.id}: {event.kind} {event.event}]')} "
            f"{escape(json.dumps(event.data))}[/magenta]"
        )

    return show
