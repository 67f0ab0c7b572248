"""The read cache: hits without requests, per-tenant entries, TTLs, stale answers on failure."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from patchbay import CallContext
from patchbay.http._types import Request, Response
from patchbay.observe import MemorySink
from patchbay.policies._cache import CachePolicy
from patchbay.state import MemoryStore, StateUnavailable

from .support import (
    Clock,
    FakeTransport,
    exchange_for,
    hang,
    make_config,
    make_runtime,
    ok,
    pipeline,
    refused,
    request_for,
    status,
)

CACHED = {"get_item": {"cache": {"ttl_s": 60, "stale_if_error_s": 600}}}
ITEM = {"item_id": "i-1"}


async def test_a_hit_answers_without_a_request() -> None:
    transport, sink = FakeTransport(), MemorySink()
    async with make_runtime(make_config(tools=CACHED), transport, sink=sink) as rt:
        first = await rt.call_tool("get_item", ITEM, "c-1")
        second = await rt.call_tool("get_item", ITEM, "c-2")
        other = await rt.call_tool("get_item", {"item_id": "i-2"}, "c-3")
    assert first.ok and not first.meta["cached"]
    assert second.ok and second.meta["cached"] and "stale" not in second.meta
    assert second.result == first.result
    assert second.meta["attempts"] == 0 and second.meta["cache_age_s"] < 1
    assert other.result != first.result
    assert len(transport.sent) == 2
    assert [e.outcome for e in sink.of_kind("policy")] == ["cache_hit"]


async def test_tenants_never_share_entries() -> None:
    async def per_tenant(request: Request) -> Response:
        return await ok(request)

    transport = FakeTransport(per_tenant)
    config = make_config({"tenants": {"acme": {}, "globex": {}}}, tools=CACHED)
    async with make_runtime(config, transport) as rt:
        for tenant in ("acme", "globex", None, "acme", "globex", None):
            await rt.call_tool("get_item", ITEM, CallContext(id=f"c-{tenant}", tenant=tenant))
    assert len(transport.sent) == 3, "one request per tenant, then hits"


async def test_entries_expire_after_ttl() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    config = make_config(tools={"get_item": {"cache": {"ttl_s": 60}}})
    transport = FakeTransport()
    send = pipeline([CachePolicy(store, clock=clock)], transport)

    async def call() -> Any:
        exchange = exchange_for(config, "get_item")
        await send(request_for(exchange, **ITEM), exchange)
        return exchange

    assert not (await call()).cached
    clock.advance(59)
    assert (await call()).cached
    clock.advance(2)
    assert not (await call()).cached
    assert len(transport.sent) == 2


async def test_only_successes_are_stored() -> None:
    transport = FakeTransport(status(503))
    async with make_runtime(make_config(tools=CACHED), transport) as rt:
        failed = await rt.call_tool("get_item", ITEM, "c-1")
        transport.answer = status(404)
        missing = await rt.call_tool("get_item", ITEM, "c-2")
        transport.answer = ok
        fine = await rt.call_tool("get_item", ITEM, "c-3")
    assert not failed.ok and not missing.ok and fine.ok and not fine.meta["cached"]
    assert len(transport.sent) == 3


SHORT = {"get_item": {"cache": {"ttl_s": 0.05, "stale_if_error_s": 60}, "budget_s": 0.4}}


async def test_stale_if_error_serves_the_last_good_answer_marked_stale() -> None:
    breaker = {"breaker": {"min_calls": 2, "failure_rate": 0.5, "open_s": 30}}
    for answer in (status(503), refused, hang()):
        transport, sink = FakeTransport(), MemorySink()
        config = make_config({**breaker, "timeout_s": 5}, SHORT)
        async with make_runtime(config, transport, sink=sink) as rt:
            good = await rt.call_tool("get_item", ITEM, "c-1")
            await asyncio.sleep(0.06)
            transport.answer = answer
            started = time.monotonic()
            stale = await rt.call_tool("get_item", ITEM, "c-2")
            elapsed = time.monotonic() - started
            # The breaker is open now: the stale answer still comes, without a request.
            sent = len(transport.sent)
            behind_breaker = await rt.call_tool("get_item", ITEM, "c-3")
        assert stale.ok, stale.to_dict()
        assert stale.result == good.result
        assert stale.meta["stale"] is True and stale.meta["cached"] is True
        assert stale.meta["cache_age_s"] >= 0.05
        assert elapsed < 0.4, "answered within the budget even when the API hangs"
        assert behind_breaker.ok and behind_breaker.meta["stale"]
        assert len(transport.sent) == sent
        assert "stale" in [e.outcome for e in sink.of_kind("policy")]


async def test_no_stale_answer_for_a_client_error_or_past_the_window() -> None:
    transport = FakeTransport()
    config = make_config(tools={"get_item": {"cache": {"ttl_s": 0.05, "stale_if_error_s": 0.1}}})
    async with make_runtime(config, transport) as rt:
        await rt.call_tool("get_item", ITEM, "c-1")
        await asyncio.sleep(0.06)
        transport.answer = status(404)
        missing = await rt.call_tool("get_item", ITEM, "c-2")
        await asyncio.sleep(0.1)
        transport.answer = status(503)
        failed = await rt.call_tool("get_item", ITEM, "c-3")
    assert missing.error is not None and missing.error.code == "not_found"
    assert failed.error is not None and failed.error.code == "upstream_unavailable"


class BrokenStore(MemoryStore):
    """A store whose reads and writes fail, as an unreachable one without a fallback would."""

    async def get(self, key: str) -> bytes | None:
        raise StateUnavailable("down")

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        raise StateUnavailable("down")


async def test_a_failing_store_only_costs_the_shared_cache() -> None:
    transport = FakeTransport()
    config = make_config(tools=CACHED)
    send = pipeline([CachePolicy(BrokenStore())], transport)
    for item in ("i-1", "i-2", "i-1"):
        exchange = exchange_for(config, "get_item")
        response = await send(request_for(exchange, item_id=item), exchange)
        assert response.status == 200
    assert len(transport.sent) == 2, "this replica still remembers what it fetched"
