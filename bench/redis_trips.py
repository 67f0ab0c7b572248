"""Store round trips and added time of one tool call on Redis, against memory in the same run.

A tool call in a phone call that is already live (its state loaded): a live GET and a payment,
with breaker, rate limit and quota on each and the idempotency ledger on the payment. Round
trips are counted where they happen, on redis-py's connections (one send per round trip: a
pipeline is one send). Targets: at most 2 round trips per tool call (one before sending, one
after), and Redis adding at most 0.6 ms to a live GET and 0.9 ms to a payment over memory.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from redis.asyncio.connection import AbstractConnection

from patchbay import CallContext, ToolRuntime
from patchbay.state import MemoryStore, open_store
from resilience import JAMIE, _floor, _redis_server, _setup

TARGET_TRIPS = 2
TARGET_MS = {"get": 0.6, "pay": 0.9}
_PER_CALL = 12  # tool calls per phone call (the payment's ledger key names call and invoice)

Step = Callable[[int], Awaitable[Any]]


@contextmanager
def counting_sends() -> Iterator[list[int]]:
    """Count the sends of every redis-py connection (each send is one round trip)."""
    count = [0]
    original = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, *args: Any, **kw: Any) -> None:
        count[0] += 1
        await original(self, *args, **kw)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    try:
        yield count
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


class _Calls:
    """Tool calls of phone calls that are already live: starting and ending them is untimed."""

    def __init__(self, runtime: ToolRuntime, tag: str) -> None:
        self.runtime = runtime
        self.tag = f"{tag}{uuid.uuid4().hex[:8]}-"
        self.live: CallContext | None = None

    async def before(self, i: int) -> CallContext:
        if i % _PER_CALL == 0 or self.live is None:
            if self.live is not None:
                await self.runtime.end_call(self.live)
            self.live = CallContext(id=f"{self.tag}{i // _PER_CALL}")
            await self.runtime.start_call(self.live)
        return self.live

    async def get(self, ctx: CallContext, i: int) -> None:
        result = await self.runtime.call_tool("get_customer", {"customer_id": JAMIE}, ctx)
        if not result.ok:
            raise RuntimeError(result.to_json())

    async def pay(self, ctx: CallContext, i: int) -> None:
        args = {"invoice_id": f"inv_{2001 + i % _PER_CALL}", "amount": 1}
        result = await self.runtime.call_tool("pay_invoice", args, ctx)
        if not result.ok or result.meta.get("deduplicated"):
            raise RuntimeError(result.to_json())


async def _median_ms(calls: _Calls, kind: str, n: int, start: int) -> float:
    run = calls.get if kind == "get" else calls.pay
    times = []
    for i in range(start, start + n):
        ctx = await calls.before(i)
        t0 = time.perf_counter()
        await run(ctx, i)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def bench_redis_trips(rounds: int = 3, n: int = 240) -> dict[str, float]:
    """Round trips and added milliseconds per tool call on Redis, beside memory."""
    async with _redis_server() as url:
        if url is None:
            print("redis round trips: skipped (no redis-server installed)", flush=True)
            return {}
        redis_store = open_store(url, key_prefix=f"patchbay-bench:{uuid.uuid4().hex}:")
        async with (
            _setup(MemoryStore(), redis_store) as (server, [memory, redis]),
            aiohttp.ClientSession() as session,
        ):
            out: dict[str, float] = {}
            counted = _Calls(redis, "count-")
            for kind in ("get", "pay"):
                await _median_ms(counted, kind, 24, 0)  # warm: connections, scripts
                trips = 0
                for i in range(24, 124):
                    ctx = await counted.before(i)
                    with counting_sends() as sends:
                        await (counted.get if kind == "get" else counted.pay)(ctx, i)
                    trips += sends[0]
                out[f"{kind}_trips"] = trips / 100
            floor = _floor(session, server.url, server.api_key)
            runs = {"memory": _Calls(memory, "m-"), "redis": _Calls(redis, "r-")}
            figures: dict[str, list[float]] = {}
            for r in range(rounds + 1):
                floor_times = [0.0] * n
                for i in range(n):
                    t0 = time.perf_counter()
                    await floor(i)
                    floor_times[i] = (time.perf_counter() - t0) * 1000
                if r:  # the first round warms up
                    figures.setdefault("floor", []).append(statistics.median(floor_times))
                for kind in ("get", "pay"):
                    for name, calls in runs.items():
                        ms = await _median_ms(calls, kind, n, (r + 1) * 10 * n)
                        if r:
                            figures.setdefault(f"{kind}_{name}", []).append(ms)
    for name, values in figures.items():
        out[f"{name}_ms"] = statistics.median(values)
    for kind in ("get", "pay"):
        out[f"{kind}_added_ms"] = out[f"{kind}_redis_ms"] - out[f"{kind}_memory_ms"]
    for line in report_redis_trips(out):
        print(line, flush=True)
    return out


def report_redis_trips(r: dict[str, float]) -> list[str]:
    """Lines for the bench report."""
    lines = [
        f"a tool call in a live phone call (one GET, hand-written floor {r['floor_ms']:.3f} ms)"
    ]
    for kind, what in (("get", "live GET"), ("pay", "payment")):
        trips, added = r[f"{kind}_trips"], r[f"{kind}_added_ms"]
        ok = trips <= TARGET_TRIPS and added <= TARGET_MS[kind]
        lines.append(
            f"{what}: {trips:.2f} redis round trips per call (target <= {TARGET_TRIPS}); "
            f"memory {r[f'{kind}_memory_ms']:.3f} ms, redis {r[f'{kind}_redis_ms']:.3f} ms: "
            f"redis adds {added:+.3f} ms (target <= {TARGET_MS[kind]} ms) "
            f"{'[ok]' if ok else '[MISSED]'}"
        )
    return lines
