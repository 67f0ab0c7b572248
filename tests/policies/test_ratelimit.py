"""The client-side rate limit: waits that fit the budget, refusals that do not, shared buckets."""

from __future__ import annotations

import asyncio
import time

import pytest

from patchbay import CallContext
from patchbay.http._types import Request, Response
from patchbay.observe import MemorySink
from patchbay.state import MemoryStore

from .support import FakeTransport, make_config, make_runtime, ok, status

ITEM = {"item_id": "i-1"}


class Stamped(FakeTransport):
    """Remembers when each request was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    async def send(self, request: Request, timeout_s: float) -> Response:
        self.times.append(time.monotonic())
        return await super().send(request, timeout_s)


async def test_calls_wait_for_a_slot_and_hold_the_rate() -> None:
    transport, sink = Stamped(), MemorySink()
    config = make_config({"rate_limit": {"per_second": 20, "burst": 2}})
    async with make_runtime(config, transport, sink=sink, sleep=asyncio.sleep) as rt:
        results = await asyncio.gather(
            *(rt.call_tool("get_item", ITEM, f"c-{i}") for i in range(12))
        )
    assert all(r.ok for r in results)
    span = transport.times[-1] - transport.times[0]
    # 12 requests at 20/s with a burst of 2: the last leaves (12 - 2) / 20 s after the first.
    assert span >= 0.45, span
    waited = [r.meta.get("rate_wait_s", 0) for r in results]
    assert max(waited) >= 0.45
    assert sum(1 for w in waited if w == 0) == 2, "the burst goes at once"
    waits = [e for e in sink.of_kind("policy") if e.outcome == "rate_wait"]
    assert len(waits) == 10 and all(e.extra["policy"] == "rate_limit" for e in waits)


async def test_a_wait_beyond_the_budget_is_refused_without_a_request() -> None:
    transport = FakeTransport()
    config = make_config(
        {"rate_limit": {"per_second": 1, "burst": 1}}, {"get_item": {"budget_s": 0.3}}
    )
    async with make_runtime(config, transport, sleep=asyncio.sleep) as rt:
        first = await rt.call_tool("get_item", ITEM, "c-1")
        started = time.monotonic()
        second = await rt.call_tool("get_item", ITEM, "c-2")
    assert first.ok
    assert second.error is not None and second.error.code == "rate_limited"
    assert second.error.retryable
    assert "as many requests as it accepts" in second.error.message
    assert second.say == "I can't reach the item system."
    assert time.monotonic() - started < 0.05, "refused at once, not after waiting"
    assert len(transport.sent) == 1


async def test_the_injected_sleep_does_the_waiting() -> None:
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    config = make_config({"rate_limit": {"per_second": 10, "burst": 1}})
    # A clock that stands still: the waits are exactly the reservations, however slow the host.
    store = MemoryStore(clock=lambda: 1000.0)
    async with make_runtime(config, FakeTransport(), sleep=record, store=store) as rt:
        for i in range(3):
            assert (await rt.call_tool("get_item", ITEM, f"c-{i}")).ok
    assert slept == pytest.approx([0.1, 0.2])


async def test_every_retry_pays_for_its_slot() -> None:
    answers = iter([status(503), status(503), ok, ok])

    async def scripted(request: Request) -> Response:
        return await next(answers)(request)

    transport = FakeTransport(scripted)
    config = make_config(
        {
            "rate_limit": {"per_second": 1, "burst": 3},
            "retry": {"attempts": 3, "backoff_s": 0, "max_backoff_s": 0},
        },
        {"get_item": {"budget_s": 0.5}},
    )
    async with make_runtime(config, transport) as rt:
        first = await rt.call_tool("get_item", ITEM, "c-1")
        second = await rt.call_tool("get_item", ITEM, "c-2")
    assert first.ok and first.meta["attempts"] == 3
    assert second.error is not None and second.error.code == "rate_limited"
    assert len(transport.sent) == 3


async def test_tenants_share_the_bucket_unless_they_have_their_own() -> None:
    store = MemoryStore()
    config = make_config(
        {
            "rate_limit": {"per_second": 1, "burst": 1},
            "tenants": {"big": {"rate_limit": {"per_second": 1, "burst": 1}}, "small": {}},
        },
        {"get_item": {"budget_s": 0.2}},
    )
    async with make_runtime(config, FakeTransport(), store=store) as rt:
        plain = await rt.call_tool("get_item", ITEM, CallContext(id="a"))
        small = await rt.call_tool("get_item", ITEM, CallContext(id="b", tenant="small"))
        big = await rt.call_tool("get_item", ITEM, CallContext(id="c", tenant="big"))
    assert plain.ok
    assert small.error is not None and small.error.code == "rate_limited"
    assert big.ok, "a tenant with its own limit has its own bucket"
