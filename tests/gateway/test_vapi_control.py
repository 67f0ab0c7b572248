"""Vapi Live Call Control: a live call's events POSTed to the controlUrl of its server messages.

A recording control-URL server on loopback stands in for Vapi's: it keeps every body the
gateway POSTs, so a test sees exactly what Vapi would receive (and the caller then hear).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from patchbay.gateway import create_app
from patchbay.gateway._vapi_control import (
    VAPI_CONTROL_HOSTS,
    VapiControl,
    allowed_control_url,
    control_url,
)
from patchbay.runtime import ToolRuntime

from .gateway_support import Stack, running, small_config
from .surfaces import vapi_message

WORDS = "Your payment has cleared; confirmation PAY-77AB."
TOKEN_PATH = "s3cr3t-capability-9f2"
VAPI = {"X-Vapi-Secret": "vapi-secret-51d2"}


@dataclass
class Recorder:
    """A control-URL server: answers `statuses` in turn (then 200), keeps each body."""

    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def control(self, request: web.Request) -> web.Response:
        self.bodies.append({"path": request.path, **await request.json()})
        self.arrived.set()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"ok": status < 300}, status=status)

    async def until(self, count: int) -> list[dict[str, Any]]:
        while len(self.bodies) < count:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 10)
        return self.bodies


async def _until(check: Callable[[], bool], within: float = 10.0) -> None:
    """Poll `check` until it holds; fail after `within` seconds."""
    for _ in range(int(within / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    found = Recorder()
    app = web.Application()
    app.router.add_post("/{call}/control", found.control)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield found
    await runner.cleanup()


@pytest.fixture
async def gateway(secrets_env: None) -> AsyncIterator[Any]:
    """A gateway whose Vapi control may reach the loopback recorder; yields (Stack, control)."""
    import aiohttp

    from patchbay.observe import MemorySink

    @asynccontextmanager
    async def start() -> AsyncIterator[tuple[Stack, VapiControl]]:
        config = small_config()
        events = MemorySink()
        async with ToolRuntime(config, sinks=[events]) as rt, aiohttp.ClientSession() as client:
            app = create_app(rt, config)
            control: VapiControl = app.state.gateway.vapi_control
            control.hosts = ("127.0.0.1",)  # the recorder stands in for Vapi's hosts
            async with running(app) as url:
                yield Stack(rt, url, client, events), control

    yield start


def tool_calls(call_id: str, url: str | None) -> dict[str, Any]:
    body = vapi_message(
        "vapi_api_reference_tool_calls.json", [("t1", "echo", {"text": "hi"})], call_id
    )
    if url is not None:
        body["message"]["call"]["monitor"] = {"listenUrl": "wss://x/listen", "controlUrl": url}
    return body


async def test_the_events_of_a_live_call_reach_its_control_url(
    gateway: Any, recorder: Recorder
) -> None:
    async with gateway() as (s, control):
        status, data = await s.post(
            "/vapi", tool_calls("v-1", f"{recorder.url}/v-1/control"), **VAPI
        )
        assert status == 200 and data["results"][0]["toolCallId"] == "t1"
        spoken = await s.runtime.publish_call_event(
            "v-1", tenant=None, kind="webhook", event="payment.succeeded", say=WORDS,
            data={"confirmation_number": "PAY-77AB"},
        )  # fmt: skip
        quiet = await s.runtime.publish_call_event(
            "v-1", tenant=None, kind="background", event="create_payment", say=None
        )
        first, second = await recorder.until(2)
        assert control.posted("v-1") == [spoken.id, quiet.id]

        # What Vapi's Live Call Control documents: add-message, which triggers a response when
        # there is something to say; the words are in the system message the assistant reads.
        assert first["path"] == "/v-1/control"
        assert first["type"] == "add-message" and first["triggerResponseEnabled"] is True
        assert first["message"]["role"] == "system"
        assert WORDS in first["message"]["content"] and "PAY-77AB" in first["message"]["content"]
        assert second["triggerResponseEnabled"] is False
        assert "create_payment" in second["message"]["content"]

        # The end-of-call report stops the following.
        report = {"message": {"type": "end-of-call-report", "call": {"id": "v-1"}}}
        assert await s.post("/vapi", report, **VAPI) == (200, {})
        assert len(control) == 0


async def test_the_call_is_followed_once_and_a_new_url_replaces_the_old(
    gateway: Any, recorder: Recorder
) -> None:
    async with gateway() as (s, control):
        await s.post("/vapi", tool_calls("v-2", f"{recorder.url}/old/control"), **VAPI)
        update = {
            "message": {
                "type": "status-update",
                "status": "in-progress",
                "call": {"id": "v-2", "monitor": {"controlUrl": f"{recorder.url}/new/control"}},
            }
        }
        assert await s.post("/vapi", update, **VAPI) == (200, {})
        assert len(control) == 1
        await s.runtime.publish_call_event("v-2", tenant=None, kind="webhook", event="e", say=WORDS)
        [body] = await recorder.until(1)
        assert body["path"] == "/new/control"
        ended = {"message": {"type": "status-update", "status": "ended", "call": {"id": "v-2"}}}
        await s.post("/vapi", ended, **VAPI)
        assert len(control) == 0


async def test_a_refused_post_costs_that_event_only(gateway: Any, recorder: Recorder) -> None:
    recorder.statuses = [404, 500, 500]  # refused (not retried), then down twice (retried once)
    async with gateway() as (s, control):
        await s.post("/vapi", tool_calls("v-3", f"{recorder.url}/v-3/control"), **VAPI)
        ids = []
        for n in range(3):
            event = await s.runtime.publish_call_event(
                "v-3", tenant=None, kind="webhook", event=f"e{n}", say=f"words {n}"
            )
            ids.append(event.id)
        bodies = await recorder.until(4)
        assert [b["message"]["content"].split(":")[0] for b in bodies] == [
            "Event e0 (webhook) reached this call. Tell the caller now, in these words",
            "Event e1 (webhook) reached this call. Tell the caller now, in these words",
            "Event e1 (webhook) reached this call. Tell the caller now, in these words",
            "Event e2 (webhook) reached this call. Tell the caller now, in these words",
        ]
        assert control.posted("v-3") == [ids[2]]


async def test_an_unknown_control_host_is_never_posted_to_nor_logged_whole(
    gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="patchbay.gateway")
    async with gateway() as (s, control):
        url = f"https://evil.example/{TOKEN_PATH}/control"
        status, _ = await s.post("/vapi", tool_calls("v-4", url), **VAPI)
        assert status == 200
        assert len(control) == 0
    assert "evil.example" in caplog.text
    assert TOKEN_PATH not in caplog.text


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://phone-call-websocket.aws-us-west-2-backend-production2.vapi.ai/x/control", True),
        ("https://vapi.ai/x/control", True),
        ("http://phone-call-websocket.vapi.ai/x/control", False),  # plain http off loopback
        ("https://vapi.ai.evil.example/x/control", False),
        ("https://notvapi.ai/x/control", False),
        ("https://user:pw@api.vapi.ai/x/control", False),
        ("ftp://api.vapi.ai/x", False),
        ("not a url", False),
    ],
)
def test_only_vapi_hosts_are_allowed_by_default(url: str, ok: bool) -> None:
    assert allowed_control_url(url, VAPI_CONTROL_HOSTS) is ok


def test_the_control_url_is_read_where_vapi_puts_it() -> None:
    assert control_url({"call": {"monitor": {"controlUrl": "https://a.vapi.ai/c"}}}) == (
        "https://a.vapi.ai/c"
    )
    assert control_url({"monitor": {"controlUrl": "https://b.vapi.ai/c"}}) == "https://b.vapi.ai/c"
    assert control_url({"call": {"id": "x"}}) is None


async def test_the_followed_calls_are_bounded(secrets_env: None, recorder: Recorder) -> None:
    async with ToolRuntime(small_config()) as rt:
        control = VapiControl(rt, hosts=["127.0.0.1"], max_calls=2)
        try:
            for n in range(3):
                url = f"{recorder.url}/b-{n}/control"
                control.observe({"call": {"id": f"b-{n}", "monitor": {"controlUrl": url}}}, None)
            assert len(control) == 2
            # The oldest call was dropped: its event goes nowhere, the two newest' still go out.
            for n in range(3):
                await rt.publish_call_event(
                    f"b-{n}", tenant=None, kind="webhook", event=f"e-b{n}", say=WORDS
                )
            bodies = await recorder.until(2)
            assert sorted(b["path"] for b in bodies) == ["/b-1/control", "/b-2/control"]
        finally:
            await control.close()
        assert len(control) == 0


async def test_two_replicas_following_one_call_post_each_event_once(
    secrets_env: None, recorder: Recorder
) -> None:
    # Vapi's messages for one call may reach any replica: both follow it, over one store.
    async with ToolRuntime(small_config()) as rt:
        replicas = [VapiControl(rt, hosts=["127.0.0.1"]) for _ in range(2)]
        try:
            message = {
                "call": {"id": "r-1", "monitor": {"controlUrl": f"{recorder.url}/r/control"}}
            }
            for control in replicas:
                control.observe(message, "acme")
            ids = []
            for n in range(3):
                event = await rt.publish_call_event(
                    "r-1", tenant="acme", kind="webhook", event=f"e{n}", say=f"words {n}"
                )
                ids.append(event.id)
            for control in replicas:  # each replica handled every event
                await _until(lambda c=control: c.seen("r-1", "acme") == ids)  # type: ignore[misc]
            posted = sorted(i for control in replicas for i in control.posted("r-1", "acme"))
            assert posted == sorted(ids)  # each event posted by one replica only
            assert len(recorder.bodies) == 3
        finally:
            for control in replicas:
                await control.close()
