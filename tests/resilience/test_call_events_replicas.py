"""Call events across replicas sharing a store: delivered where the subscriber is, resumable
anywhere (Redis alone, and Redis beside PostgreSQL as the durable store)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn

from patchbay import ToolRuntime
from patchbay.gateway import create_app
from patchbay.runtime import CallEvent
from patchbay.spec import Config, GatewayAuth, GatewaySpec, load_config
from patchbay.spec._state import StateSpec
from patchbay.state import StateStore, open_store

pytestmark = pytest.mark.redis

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "billing" / "patchbay.yaml"
TOKEN = "tok-replicas-sse-41c9"
Pair = tuple[ToolRuntime, ToolRuntime]


def _config() -> Config:
    cfg = load_config(str(EXAMPLE), env={"BILLING_URL": "http://127.0.0.1:9", "K": "x"})
    auth = GatewayAuth(bearer="env:PB_REPLICA_SSE_TOKEN")
    return cfg.model_copy(update={"gateway": GatewaySpec(auth=auth)})


@pytest.fixture(params=["redis", "redis-cluster", "redis+postgresql", "postgresql"])
def open_shared(
    request: pytest.FixtureRequest, redis_url: str, redis_key_prefix: str
) -> Callable[[], StateStore]:
    """Opens one more replica's store over the shared state."""
    if request.param == "redis":
        return lambda: open_store(redis_url, key_prefix=redis_key_prefix)
    if request.param == "redis-cluster":
        cluster: str = request.getfixturevalue("redis_cluster_url")
        cluster_prefix: str = request.getfixturevalue("redis_cluster_prefix")
        return lambda: open_store(cluster, key_prefix=cluster_prefix)
    postgres_url: str = request.getfixturevalue("postgres_url")
    prefix: str = request.getfixturevalue("postgres_key_prefix")
    if request.param == "postgresql":  # LISTEN/NOTIFY between the replicas
        return lambda: open_store(postgres_url, key_prefix=prefix)
    spec = StateSpec(fast=redis_url, durable=postgres_url)
    return lambda: open_store(spec, key_prefix=prefix)


@pytest.fixture
async def pair(
    open_shared: Callable[[], StateStore], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Pair]:
    monkeypatch.setenv("BILLING_API_KEY", "unused")
    monkeypatch.setenv("PB_REPLICA_SSE_TOKEN", TOKEN)
    async with (
        ToolRuntime(_config(), sinks=[], store=open_shared()) as a,
        ToolRuntime(_config(), sinks=[], store=open_shared()) as b,
    ):
        yield a, b


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port, in this event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def _next(stream: AsyncIterator[CallEvent]) -> CallEvent:
    return await asyncio.wait_for(stream.__anext__(), 10)


async def test_an_event_published_on_one_replica_reaches_a_subscriber_on_another(
    pair: Pair,
) -> None:
    a, b = pair
    await a.start_call("c-x")
    assert await b.call_is_live("c-x")
    async with b.call_events("c-x") as stream:
        waiting = asyncio.ensure_future(_next(stream))
        await asyncio.sleep(0.05)  # subscribed on B
        sent = await a.publish_call_event(
            "c-x", tenant=None, kind="webhook", event="payment.succeeded", say="Paid."
        )
        got = await waiting
        assert got == sent
        ending = asyncio.ensure_future(_next(stream))
        await a.end_call("c-x")  # ended on A: B's stream ends too
        with pytest.raises(StopAsyncIteration):
            await ending
    assert not await b.call_is_live("c-x")


async def test_a_large_event_reaches_the_other_replica_whole(pair: Pair) -> None:
    a, b = pair
    await a.start_call("c-big")
    big = {"notes": "x" * 20_000}  # beyond what one PostgreSQL notification carries
    async with b.call_events("c-big") as stream:
        waiting = asyncio.ensure_future(_next(stream))
        await asyncio.sleep(0.05)
        await a.publish_call_event("c-big", tenant=None, kind="webhook", event="big", data=big)
        got = await waiting
    assert got.data == big


async def test_publishers_on_both_replicas_give_one_ordered_stream(pair: Pair) -> None:
    a, b = pair
    await a.start_call("c-both")
    got: list[str] = []

    async def follow() -> None:
        async for event in b.call_events("c-both"):
            got.append(event.id)

    follower = asyncio.ensure_future(follow())
    await asyncio.sleep(0.05)

    async def burst(rt: ToolRuntime, name: str) -> None:
        for n in range(40):
            await rt.publish_call_event("c-both", tenant=None, kind="webhook", event=f"{name}{n}")

    await asyncio.gather(burst(a, "a"), burst(b, "b"))
    await b.end_call("c-both")
    await asyncio.wait_for(follower, 10)
    assert got == [str(n) for n in range(1, 81)]


async def test_tenants_stay_apart_across_replicas(pair: Pair) -> None:
    a, b = pair
    await a.publish_call_event("c-t", tenant="acme", kind="webhook", event="acme.only")
    await b.end_call("c-t", "globex")
    assert [e async for e in b.call_events("c-t", tenant="globex")] == []
    await a.end_call("c-t", "acme")
    assert [e.event async for e in b.call_events("c-t", tenant="acme")] == ["acme.only"]


async def _frames(answer: aiohttp.ClientResponse) -> AsyncIterator[dict[str, str]]:
    frame: dict[str, str] = {}
    async for raw in answer.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if frame:
                yield frame
            frame = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            frame[name] = value.removeprefix(" ")


async def test_an_sse_client_resumes_on_another_replica_without_loss_or_repeats(
    pair: Pair,
) -> None:
    a, b = pair
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with AsyncExitStack() as stack:
        url_a = await stack.enter_async_context(running(create_app(a)))
        url_b = await stack.enter_async_context(running(create_app(b)))
        session = await stack.enter_async_context(aiohttp.ClientSession())
        await a.start_call("c-sse")
        seen: list[str] = []
        async with session.get(url_a + "/calls/c-sse/events", headers=auth) as answer:
            stream = _frames(answer)
            for n in range(3):
                await b.publish_call_event("c-sse", tenant=None, kind="webhook", event=f"e{n}")
                frame = await asyncio.wait_for(stream.__anext__(), 10)
                seen.append(frame["id"])
        # Gone from A; meanwhile events keep coming, published on either replica.
        for n in range(3, 6):
            rt = a if n % 2 else b
            await rt.publish_call_event("c-sse", tenant=None, kind="webhook", event=f"e{n}")
        resume = {**auth, "Last-Event-ID": seen[-1]}
        async with session.get(url_b + "/calls/c-sse/events", headers=resume) as answer:
            assert answer.status == 200
            stream = _frames(answer)
            for _ in range(3):
                frame = await asyncio.wait_for(stream.__anext__(), 10)
                seen.append(frame["id"])
            await a.publish_call_event("c-sse", tenant=None, kind="completion", event="e6")
            live = await asyncio.wait_for(stream.__anext__(), 10)
            seen.append(live["id"])
            await a.end_call("c-sse")
            rest = [f async for f in stream]
        after_end = await session.get(url_a + "/calls/c-sse/events", headers=resume)
        final = {**auth, "Last-Event-ID": seen[-1]}
        nothing_left = await session.get(url_a + "/calls/c-sse/events", headers=final)
    assert seen == [str(n) for n in range(1, 8)]
    assert json.loads(live["data"])["event"] == "e6" and live["event"] == "completion"
    assert [f["event"] for f in rest] == ["end"]
    assert after_end.status == 200  # an ended call still replays what the client missed
    assert nothing_left.status == 204
