"""Redis dies mid-run and comes back: no call fails, and shared state resumes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from patchbay import CallContext, ToolResult
from patchbay.state import FallbackStore, MemoryStore, RedisStore

from .support import JAMIE, PAYMENT, RuntimeFactory, billing_yaml

pytestmark = pytest.mark.redis

EVERYTHING = billing_yaml(
    {
        "breaker": {"failure_rate": 0.5, "window": 20, "min_calls": 10, "open_s": 5},
        "rate_limit": {"per_second": 500, "burst": 50},
        "quota": {"per_day": 100_000},
    },
    {
        "get_customer": {"cache": {"ttl_s": 0.05, "stale_if_error_s": 30}},
        "pay_invoice": {"quota": {"per_call": 1000}},
    },
)


class Traffic:
    """Tool calls in a loop, every policy's state path in use, until stopped."""

    def __init__(self, call: Callable[..., Any]) -> None:
        self.call = call
        self.results: list[tuple[float, ToolResult]] = []
        self.running = True

    async def run(self) -> None:
        n = 0
        while self.running:
            n += 1
            payment = {**PAYMENT, "amount": 1}
            batch = await asyncio.gather(
                self.call("get_customer", {"customer_id": JAMIE}, CallContext(id=f"g-{n}")),
                self.call("pay_invoice", payment, CallContext(id=f"p-{n}")),
                self.call("pay_invoice", payment, CallContext(id=f"p-{n}")),  # a duplicate
            )
            self.results.extend((time.monotonic(), r) for r in batch)
            await asyncio.sleep(0.01)

    def failures(self) -> list[dict[str, Any]]:
        return [r.to_dict() for _, r in self.results if not r.ok]


def keys(url: str, prefix: str) -> list[bytes]:
    client = redis.Redis.from_url(url)
    try:
        return list(client.scan_iter(match=prefix + "*", count=1000))
    finally:
        client.close()


async def wait_for(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def test_a_redis_outage_degrades_and_recovers_without_failing_calls(
    make_runtime: RuntimeFactory, redis_server_factory: Callable[[], Any]
) -> None:
    server = redis_server_factory()
    prefix = "outage-test:"
    store = FallbackStore(
        RedisStore(server.url, prefix=prefix), MemoryStore(), probe_interval_s=0.1
    )
    rt = make_runtime(EVERYTHING, store=store)
    traffic = Traffic(rt.call_tool)
    task = asyncio.create_task(traffic.run())
    try:
        await asyncio.sleep(0.3)
        assert not store.degraded
        assert any(b":quota:" in k for k in keys(server.url, prefix))
        before = len(traffic.results)

        await asyncio.to_thread(server.kill)
        await wait_for(lambda: store.degraded, 2)
        await asyncio.sleep(0.5)
        during = len(traffic.results) - before
        assert store.outages == 1 and store.fallback_ops > 0

        await asyncio.to_thread(server.start)  # an empty Redis on the same port
        await wait_for(lambda: not store.degraded, 3)
        recovered_at = len(traffic.results)
        await asyncio.sleep(0.3)
        after = len(traffic.results) - recovered_at
    finally:
        traffic.running = False
        await task
    assert traffic.failures() == []
    assert before > 0 and during > 0 and after > 0, (before, during, after)
    # Shared state is back in Redis: counters, ledger, cache and breaker window (a rate key
    # expires within milliseconds at this rate, so there is none to see).
    written = keys(server.url, prefix)
    for kind in (b":quota:", b":idem:", b":cache:", b":brk:"):
        assert any(kind in k for k in written), (kind, written[:5])
    dedup = [r for _, r in traffic.results if r.meta.get("deduplicated")]
    assert len(dedup) >= (before + during + after) // 3 - 1, "duplicates deduplicated throughout"
