"""GET /calls/{id}/events: a call's events as Server-Sent Events, behind the gateway's auth."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from patchbay import CallContext, ToolRuntime
from patchbay.gateway import create_app
from patchbay.spec import Config, load_config_text

from .gateway_support import TOKEN, Stack, StackFactory, bearer, running

ACME_TOKEN = "tok-acme-sse-5e1f"
GLOBEX_TOKEN = "tok-globex-sse-0d4a"

CONFIG = """
version: 1
gateway:
  auth:
    bearer: env:PB_TEST_TOKEN
    tenants:
      acme: {bearer: env:PB_SSE_ACME_TOKEN}
      globex: {bearer: env:PB_SSE_GLOBEX_TOKEN}
integrations:
  local: {base_url: "http://127.0.0.1:9", tenants: {acme: {}, globex: {}}}
tools:
  remember:
    integration: local
    description: Note the customer this call is about.
    parameters: {customer_id: {type: string}}
    handler: sse_gateway_tools:remember
"""

HANDLERS = """
async def remember(ctx, customer_id):
    ctx.state["customer_id"] = customer_id
    return {"tenant": ctx.call.tenant}
"""

Frame = dict[str, str]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("PB_SSE_ACME_TOKEN", ACME_TOKEN)
    monkeypatch.setenv("PB_SSE_GLOBEX_TOKEN", GLOBEX_TOKEN)
    (tmp_path / "sse_gateway_tools.py").write_text(HANDLERS)
    return load_config_text(CONFIG, base_dir=tmp_path)


async def frames(answer: aiohttp.ClientResponse) -> AsyncIterator[Frame]:
    """The SSE frames of a streaming answer (comments, i.e. keep-alives, skipped)."""
    frame: Frame = {}
    async for raw in answer.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if frame:
                yield frame
            frame = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        frame[name] = value.removeprefix(" ")


async def read_all(s: Stack, path: str, **headers: str) -> tuple[int, list[Frame]]:
    async with s.session.get(s.url + path, headers=headers) as answer:
        if answer.status != 200:
            return answer.status, []
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        return 200, [f async for f in frames(answer)]


def data(frame: Frame) -> Any:
    return json.loads(frame["data"])


async def publish(s: Stack, call_id: str, tenant: str | None, event: str) -> str:
    sent = await s.runtime.publish_call_event(
        call_id, tenant=tenant, kind="webhook", event=event, say=f"About {event}."
    )
    return sent.id


async def test_a_live_stream_gets_events_then_ends_with_the_call(
    stack: StackFactory, config: Config
) -> None:
    async with stack(config) as s:
        status, _ = await s.post("/calls/c-live/start", {}, Authorization=f"Bearer {ACME_TOKEN}")
        assert status == 200
        path = s.url + "/calls/c-live/events"
        async with s.session.get(path, headers=bearer(ACME_TOKEN)) as answer:
            assert answer.status == 200
            stream = frames(answer)
            first = await publish(s, "c-live", "acme", "payment.succeeded")
            got = await asyncio.wait_for(stream.__anext__(), 5)
            await s.post("/calls/c-live/end", {}, Authorization=f"Bearer {ACME_TOKEN}")
            rest = [f async for f in stream]
    assert (got["id"], got["event"]) == (first, "webhook")
    body = data(got)
    assert (body["event"], body["say"], body["tenant"]) == (
        "payment.succeeded",
        "About payment.succeeded.",
        "acme",
    )
    assert [f["event"] for f in rest] == ["end"]
    assert data(rest[0]) == {"call_id": "c-live", "ended": True}


async def test_resuming_after_last_event_id_by_header_or_query(
    stack: StackFactory, config: Config
) -> None:
    async with stack(config) as s:
        ids = [await publish(s, "c-resume", "acme", name) for name in ("a", "b", "c")]
        await s.runtime.end_call("c-resume", "acme")
        auth = bearer(ACME_TOKEN)
        everything = await read_all(s, "/calls/c-resume/events", **auth)
        by_header = await read_all(s, "/calls/c-resume/events", **auth, **{"Last-Event-ID": "1"})
        by_query = await read_all(s, "/calls/c-resume/events?last_event_id=2", **auth)
        done = await read_all(s, "/calls/c-resume/events", **auth, **{"Last-Event-ID": "3"})
        bad = await s.get("/calls/c-resume/events", **auth, **{"Last-Event-ID": "x1"})
    assert [f.get("id") for f in everything[1]] == [*ids, None]
    assert [data(f)["event"] for f in by_header[1][:-1]] == ["b", "c"]
    assert [data(f)["event"] for f in by_query[1][:-1]] == ["c"]
    assert by_header[1][-1]["event"] == by_query[1][-1]["event"] == "end"
    # Nothing left of an ended call: 204 tells an EventSource to stop reconnecting.
    assert done[0] == 204
    assert bad[0] == 400 and json.loads(bad[1])["error"]["code"] == "bad_request"


async def test_streams_need_a_credential(stack: StackFactory, config: Config) -> None:
    async with stack(config) as s:
        status, body = await s.get("/calls/c-1/events")
        wrong, _ = await s.get("/calls/c-1/events", Authorization="Bearer nope")
    assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
    assert wrong == 401


async def test_a_tenant_streams_its_own_call_of_an_id_only(
    stack: StackFactory, config: Config
) -> None:
    async with stack(config) as s:
        await publish(s, "c-shared", "acme", "acme.secret")
        await publish(s, "c-shared", "globex", "globex.news")
        for tenant in ("acme", "globex"):
            await s.runtime.end_call("c-shared", tenant)
        acme = await read_all(s, "/calls/c-shared/events", **bearer(ACME_TOKEN))
        globex = await read_all(s, "/calls/c-shared/events", **bearer(GLOBEX_TOKEN))
        operator = await read_all(s, "/calls/c-shared/events?tenant=acme", **bearer(TOKEN))
        refused = await s.get("/calls/c-shared/events?tenant=acme", **bearer(GLOBEX_TOKEN))
    assert [data(f)["event"] for f in acme[1][:-1]] == ["acme.secret"]
    assert [data(f)["event"] for f in globex[1][:-1]] == ["globex.news"]
    assert "acme" not in json.dumps(globex[1])
    assert [data(f)["event"] for f in operator[1][:-1]] == ["acme.secret"]
    assert refused[0] == 403


async def test_a_live_stream_of_another_tenant_gets_nothing_of_the_others(
    stack: StackFactory, config: Config
) -> None:
    async with stack(config) as s:
        await s.post("/calls/c-two/start", {}, Authorization=f"Bearer {ACME_TOKEN}")
        await s.post("/calls/c-two/start", {}, Authorization=f"Bearer {GLOBEX_TOKEN}")
        url = s.url + "/calls/c-two/events"
        async with s.session.get(url, headers=bearer(GLOBEX_TOKEN)) as answer:
            stream = frames(answer)
            await publish(s, "c-two", "acme", "acme.only")
            await s.post(
                "/calls/c-two/end", {}, Authorization=f"Bearer {ACME_TOKEN}"
            )  # acme's call only
            mine = await publish(s, "c-two", "globex", "globex.only")
            got = await asyncio.wait_for(stream.__anext__(), 5)
            await s.post("/calls/c-two/end", {}, Authorization=f"Bearer {GLOBEX_TOKEN}")
            rest = [f async for f in stream]
    assert (got["id"], data(got)["event"]) == (mine, "globex.only")
    assert [f["event"] for f in rest] == ["end"]


async def test_a_background_outcome_reaches_the_stream(stack: StackFactory, config: Config) -> None:
    async with stack(config) as s:
        await s.post("/calls/c-out/start", {}, Authorization=f"Bearer {ACME_TOKEN}")
        # A write's outcome recorded for the call, as the outbox and the reconciler do.
        outcomes = s.runtime._pipelines.outcomes
        await outcomes.record(
            "outbox", tool="remember", call_id="c-out", key="bg_1", outcome="ok", tenant="acme"
        )
        await s.post("/calls/c-out/end", {}, Authorization=f"Bearer {ACME_TOKEN}")
        status, got = await read_all(s, "/calls/c-out/events", **bearer(ACME_TOKEN))
    assert status == 200 and [f["event"] for f in got] == ["background", "end"]
    assert data(got[0])["data"] == {"tool": "remember", "key": "bg_1", "outcome": "ok", "ok": True}


async def test_a_client_that_goes_away_releases_its_subscription(
    stack: StackFactory, config: Config
) -> None:
    async with stack(config) as s:
        await s.post("/calls/c-gone/start", {}, Authorization=f"Bearer {ACME_TOKEN}")
        hub = s.runtime._events._notifier._hub  # type: ignore[attr-defined]
        url = s.url + "/calls/c-gone/events"
        async with s.session.get(url, headers=bearer(ACME_TOKEN)) as answer:
            stream = frames(answer)
            await publish(s, "c-gone", "acme", "first")
            await asyncio.wait_for(stream.__anext__(), 5)
            assert len(hub.channels) == 1
        for _ in range(500):  # the server notices the disconnect
            if not hub.channels:
                break
            await asyncio.sleep(0.01)
        assert hub.channels == {}
        # The call goes on: a new client still gets what it missed.
        await publish(s, "c-gone", "acme", "second")
        await s.post("/calls/c-gone/end", {}, Authorization=f"Bearer {ACME_TOKEN}")
        status, got = await read_all(
            s, "/calls/c-gone/events", **{"Last-Event-ID": "1"}, **bearer(ACME_TOKEN)
        )
    assert status == 200 and [data(f)["event"] for f in got[:-1]] == ["second"]


async def test_a_quiet_stream_gets_keep_alive_comments(config: Config, secrets_env: None) -> None:
    async with ToolRuntime(config, sinks=[]) as rt:
        app = create_app(rt, config)
        app.state.gateway.event_streams.keepalive_s = 0.05
        async with running(app) as url, aiohttp.ClientSession() as session:
            await rt.start_call(CallContext(id="c-quiet", tenant="acme"))
            comments: list[bytes] = []
            path = url + "/calls/c-quiet/events"
            async with session.get(path, headers=bearer(ACME_TOKEN)) as answer:
                async for raw in answer.content:
                    if raw.startswith(b":"):
                        comments.append(raw)
                    if len(comments) == 2:
                        break
    assert len(comments) == 2  # nothing happened in the call, and the stream still speaks
