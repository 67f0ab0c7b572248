"""The circuit breaker: opens on failures (never on 4xx), fails fast, probes, closes, shares."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from patchbay import CallContext
from patchbay._errors import CircuitOpen
from patchbay.http._types import Request, Response
from patchbay.observe import MemorySink
from patchbay.policies._breaker import BreakerPolicy
from patchbay.state import MemoryStore

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

BREAKER = {"failure_rate": 0.5, "window": 10, "min_calls": 4, "open_s": 30, "half_open_calls": 2}
ITEM = {"item_id": "i-1"}


def outcomes(sink: MemorySink) -> list[str]:
    return [e.outcome or "" for e in sink.of_kind("policy")]


async def test_opens_after_failures_then_fails_fast_with_the_fallback() -> None:
    transport = FakeTransport(status(503))
    sink = MemorySink()
    async with make_runtime(make_config({"breaker": BREAKER}), transport, sink=sink) as rt:
        for i in range(4):
            result = await rt.call_tool("get_item", ITEM, f"c-{i}")
            assert result.error is not None and result.error.code == "upstream_unavailable"
        assert outcomes(sink).count("breaker_opened") == 1
        refused = [await rt.call_tool("get_item", ITEM, f"o-{i}") for i in range(21)]
    result = refused[0]
    assert not result.ok and result.error is not None
    assert result.error.code == "circuit_open"
    assert result.error.retryable
    assert "api has been failing" in result.error.message
    assert "Do not retry now" in result.error.message
    assert result.say == "I can't reach the item system."
    assert result.meta["attempts"] == 0
    assert len(transport.sent) == 4, "no request while the breaker is open"
    assert all(r.error is not None and r.error.code == "circuit_open" for r in refused)
    # A flood of refusals is one event per second, not one per call.
    assert outcomes(sink).count("circuit_open") == 1
    latencies = sorted(r.meta["latency_ms"] for r in refused)
    assert latencies[10] < 1.0, f"median {latencies[10]} ms for a whole tool call while open"


async def test_client_errors_never_open_it() -> None:
    transport = FakeTransport(status(404))
    async with make_runtime(make_config({"breaker": BREAKER}), transport) as rt:
        for i in range(20):
            result = await rt.call_tool("get_item", ITEM, f"c-{i}")
            assert result.error is not None and result.error.code == "not_found"
    assert len(transport.sent) == 20


async def test_needs_min_calls_and_the_failure_rate() -> None:
    answers = iter([status(503), ok] * 10)

    async def alternate(request: Request) -> Response:
        return await next(answers)(request)

    transport = FakeTransport(alternate)
    # Failure, success, failure...: the rate over the window peaks at 3/5 and stays below 70%.
    spec = {**BREAKER, "failure_rate": 0.7}
    async with make_runtime(make_config({"breaker": spec}), transport) as rt:
        for i in range(20):
            result = await rt.call_tool("get_item", ITEM, f"c-{i}")
            assert result.error is None or result.error.code != "circuit_open"
    assert len(transport.sent) == 20

    transport = FakeTransport(status(503))
    async with make_runtime(make_config({"breaker": BREAKER}), transport) as rt:
        for i in range(3):
            await rt.call_tool("get_item", ITEM, f"d-{i}")
        result = await rt.call_tool("get_item", ITEM, "d-3")
        assert result.error is not None and result.error.code == "upstream_unavailable"
        result = await rt.call_tool("get_item", ITEM, "d-4")
        assert result.error is not None and result.error.code == "circuit_open"


async def test_network_errors_and_timeouts_are_failures() -> None:
    for answer in (refused, hang()):
        transport = FakeTransport(answer)
        config = make_config({"breaker": BREAKER, "timeout_s": 0.02})
        async with make_runtime(config, transport) as rt:
            for i in range(4):
                await rt.call_tool("get_item", ITEM, f"c-{i}")
            result = await rt.call_tool("get_item", ITEM, "c-last")
        assert result.error is not None and result.error.code == "circuit_open"
        assert len(transport.sent) == 4


async def test_budget_running_out_mid_attempt_counts_as_a_timeout() -> None:
    transport = FakeTransport(hang())
    config = make_config({"breaker": BREAKER, "timeout_s": 5}, {"get_item": {"budget_s": 0.05}})
    async with make_runtime(config, transport) as rt:
        for i in range(4):
            result = await rt.call_tool("get_item", ITEM, f"c-{i}")
            assert result.error is not None and result.error.code == "timeout"
        await asyncio.sleep(0.05)  # the recording runs beside the cancelled call
        result = await rt.call_tool("get_item", ITEM, "c-last")
    assert result.error is not None and result.error.code == "circuit_open"


async def test_slow_calls_open_it() -> None:
    transport = FakeTransport(hang(0.03))
    spec = {**BREAKER, "slow_call_s": 0.02, "slow_rate": 0.5}
    async with make_runtime(make_config({"breaker": spec}), transport) as rt:
        for i in range(4):
            result = await rt.call_tool("get_item", ITEM, f"c-{i}")
            assert result.ok
        result = await rt.call_tool("get_item", ITEM, "c-last")
    assert result.error is not None and result.error.code == "circuit_open"


def _policy(clock: Clock, store: MemoryStore, **kw: Any) -> BreakerPolicy:
    return BreakerPolicy(store, clock=clock, **kw)


async def test_half_open_probes_then_close() -> None:
    clock, store, sink = Clock(), MemoryStore(), MemorySink()
    config = make_config({"breaker": BREAKER})
    transport = FakeTransport(status(503))
    send = pipeline([_policy(clock, store, refresh_s=0)], transport)

    async def call() -> Response:
        exchange = exchange_for(config, "get_item", sink=sink)
        return await send(request_for(exchange, **ITEM), exchange)

    for _ in range(4):
        assert (await call()).status == 503
    with pytest.raises(CircuitOpen, match="about 30 more seconds"):
        await call()
    clock.advance(29)
    with pytest.raises(CircuitOpen):
        await call()
    assert len(transport.sent) == 4

    # After open_s: exactly half_open_calls probes go through, the rest still fail fast.
    clock.advance(1.5)
    gate = asyncio.Event()

    async def slow_ok(request: Request) -> Response:
        await gate.wait()
        return await ok(request)

    transport.answer = slow_ok
    probes = [asyncio.create_task(call()) for _ in range(2)]
    await asyncio.sleep(0.01)
    with pytest.raises(CircuitOpen):
        await call()
    gate.set()
    assert [r.status for r in await asyncio.gather(*probes)] == [200, 200]
    assert outcomes(sink).count("breaker_half_open") == 1
    assert outcomes(sink).count("breaker_closed") == 1
    # Closed with an empty window: one new failure does not reopen it.
    transport.answer = status(503)
    assert (await call()).status == 503
    transport.answer = ok
    assert (await call()).status == 200


async def test_a_failed_probe_reopens_for_another_period() -> None:
    clock, store, sink = Clock(), MemoryStore(), MemorySink()
    config = make_config({"breaker": BREAKER})
    transport = FakeTransport(status(503))
    send = pipeline([_policy(clock, store, refresh_s=0)], transport)

    async def call() -> Response:
        exchange = exchange_for(config, "get_item", sink=sink)
        return await send(request_for(exchange, **ITEM), exchange)

    for _ in range(4):
        await call()
    clock.advance(31)
    assert (await call()).status == 503  # the probe fails
    with pytest.raises(CircuitOpen, match="about 30 more seconds"):
        await call()
    assert outcomes(sink).count("breaker_opened") == 2
    assert len(transport.sent) == 5


async def test_replicas_share_one_breaker_within_the_refresh_bound() -> None:
    store = MemoryStore()
    config = make_config({"breaker": BREAKER})
    down = FakeTransport(status(503))
    elsewhere = FakeTransport(ok)
    replica_a = pipeline([BreakerPolicy(store)], down)
    replica_b = pipeline([BreakerPolicy(store, refresh_s=0.05)], elsewhere)

    async def via(send: Any) -> Response:
        exchange = exchange_for(config, "get_item")
        result: Response = await send(request_for(exchange, **ITEM), exchange)
        return result

    assert (await via(replica_b)).status == 200  # B now holds a closed copy
    # One window for both: B's success and A's three failures make 3/4, and A opens it.
    for _ in range(3):
        assert (await via(replica_a)).status == 503
    with pytest.raises(CircuitOpen):
        await via(replica_a)
    # B may call for at most refresh_s more (the documented staleness bound), then stops.
    await asyncio.sleep(0.06)
    with pytest.raises(CircuitOpen):
        await via(replica_b)
    assert len(elsewhere.sent) <= 2


async def test_open_answers_take_microseconds() -> None:
    clock, store = Clock(), MemoryStore()
    config = make_config({"breaker": BREAKER})
    send = pipeline([_policy(clock, store)], FakeTransport(status(503)))
    exchange = exchange_for(config, "get_item")
    request = request_for(exchange, **ITEM)
    for _ in range(4):
        await send(request, exchange)
    n, refused_calls = 2000, 0
    started = time.perf_counter()
    for _ in range(n):
        try:
            await send(request, exchange)
        except CircuitOpen:
            refused_calls += 1
    per_call_ms = (time.perf_counter() - started) * 1000 / n
    assert refused_calls == n
    assert per_call_ms < 0.1, f"{per_call_ms:.4f} ms per refused call"


async def test_per_endpoint_breakers_are_separate() -> None:
    async def by_method(request: Request) -> Response:
        return await (status(503) if request.method == "GET" else ok)(request)

    transport = FakeTransport(by_method)
    config = make_config({"breaker": {**BREAKER, "per_endpoint": True}})
    async with make_runtime(config, transport) as rt:
        for i in range(5):
            await rt.call_tool("get_item", ITEM, f"c-{i}")
        result = await rt.call_tool("pay", {"invoice_id": "inv_1", "amount": 5}, "c-pay")
        assert result.ok, result.to_dict()
        result = await rt.call_tool("get_item", ITEM, "c-after")
        assert result.error is not None and result.error.code == "circuit_open"


async def test_tenants_share_the_upstream_breaker_unless_they_have_their_own() -> None:
    transport = FakeTransport(status(503))
    config = make_config(
        {"breaker": BREAKER, "tenants": {"own": {"base_url": "http://own.invalid"}, "same": {}}}
    )
    async with make_runtime(config, transport) as rt:
        for i in range(4):
            await rt.call_tool("get_item", ITEM, CallContext(id=f"c-{i}"))
        shared = await rt.call_tool("get_item", ITEM, CallContext(id="s", tenant="same"))
        own = await rt.call_tool("get_item", ITEM, CallContext(id="o", tenant="own"))
    assert shared.error is not None and shared.error.code == "circuit_open"
    assert own.error is not None and own.error.code == "upstream_unavailable"
