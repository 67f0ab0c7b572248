"""Resilience benchmarks: what an open breaker, a cached read and the Redis backend cost.

Every figure is printed beside floors measured in the same run against the same upstream (the
example billing API in its own process on loopback): the hand-written aiohttp GET (the core
floor) and patchbay's own live call. Targets: an open-breaker answer and a cached answer at
least 10x faster than a live call.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import socket
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import yaml

from patchbay import CallContext, CircuitOpen, Tool, ToolRuntime
from patchbay.http._build import build_request
from patchbay.observe import Emitter, JsonLinesSink
from patchbay.runtime._pipeline import Pipelines
from patchbay.spec import load_config_text
from patchbay.state import MemoryStore, StateStore, open_store
from patchbay.testing import BillingServer

JAMIE = "cus_8F2kLq"
MORGAN = "cus_3Hd9Wm"
Call = Callable[[int], Awaitable[Any]]


def _config_text(url: str, dead_url: str) -> str:
    def customer_tool(integration: str, **extra: Any) -> dict[str, Any]:
        return {
            "integration": integration,
            "description": "Fetch a customer's name and status by customer id.",
            "parameters": {"customer_id": {"type": "string"}},
            "request": {"method": "GET", "path": "/customers/{customer_id}"},
            "response": {
                "root": "data.customer",
                "fields": {"customer_name": "name", "status": "status", "account_tier": "tier"},
            },
            "say": {"failed": "I can't reach billing right now."},
            **extra,
        }

    auth = {"type": "api_key", "header": "X-API-Key", "secret": "env:BILLING_API_KEY"}
    policies = {
        "breaker": {"failure_rate": 0.5, "window": 20, "min_calls": 2, "open_s": 3600},
        "rate_limit": {"per_second": 100_000, "burst": 1000},
        "quota": {"per_day": 100_000_000},
    }
    data = {
        "version": 1,
        "integrations": {
            "billing": {"base_url": url, "auth": auth, "timeout_s": 2, **policies},
            "dead": {"base_url": dead_url, "auth": auth, "timeout_s": 0.5, **policies},
        },
        "tools": {
            "get_customer": customer_tool("billing"),
            "get_customer_cached": customer_tool("billing", cache={"ttl_s": 3600}),
            "get_customer_dead": customer_tool("dead"),
            "pay_invoice": {
                "integration": "billing",
                "description": "Pay an open invoice.",
                "parameters": {"invoice_id": {"type": "string"}, "amount": {"type": "integer"}},
                "request": {
                    "method": "POST",
                    "path": "/payments",
                    "body": {
                        "customer_id": MORGAN,
                        "invoice_id": "{args.invoice_id}",
                        "amount": "{args.amount}",
                        "payment_method_id": "pm_card_mc5454",
                    },
                },
                "idempotency": {"key": "call_{call.id}_invoice_{args.invoice_id}"},
            },
        },
    }
    return yaml.safe_dump(data)


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def _median_ms(call: Call, n: int, start: int = 0) -> float:
    times = []
    for i in range(start, start + n):
        t0 = time.perf_counter()
        await call(i)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _floor(session: aiohttp.ClientSession, url: str, key: str) -> Call:
    """The hand-written GET of the same customer: the core floor."""

    async def call(i: int) -> Any:
        async with session.get(f"{url}/customers/{JAMIE}", headers={"X-API-Key": key}) as resp:
            customer = (await resp.json())["data"]["customer"]
        return {"customer_name": customer["name"], "status": customer["status"]}

    return call


def _tool(runtime: ToolRuntime, tool: str, expect: str | None, **args: Any) -> Call:
    """One tool call per invocation, each in its own phone call; checks the outcome."""

    async def call(i: int) -> Any:
        call_args = args or {"customer_id": JAMIE}
        result = await runtime.call_tool(tool, call_args, CallContext(id=f"b{i}"))
        code = result.error.code if result.error else None
        if code != expect:
            raise RuntimeError(f"{tool}: expected {expect}, got {result.to_json()}")
        await runtime.end_call(f"b{i}")
        return result

    return call


async def _trip(runtime: ToolRuntime, tool: str) -> None:
    """Call a tool of the dead integration until its breaker is open."""
    for i in range(10):
        result = await runtime.call_tool(tool, {"customer_id": JAMIE}, f"trip-{i}")
        if result.error is not None and result.error.code == "circuit_open":
            return
    raise RuntimeError("the breaker did not open")


@asynccontextmanager
async def _devnull() -> AsyncIterator[JsonLinesSink]:
    """A sink that writes every event, as production does, to /dev/null."""
    with open(os.devnull, "w") as out:  # noqa: ASYNC230 - opening /dev/null does not block
        yield JsonLinesSink(out)


@asynccontextmanager
async def _setup(
    *stores: StateStore,
) -> AsyncIterator[tuple[BillingServer, list[ToolRuntime]]]:
    """The billing API in its own process, and one runtime per store over one config."""
    async with BillingServer() as server, _devnull() as sink:
        os.environ["BILLING_API_KEY"] = server.api_key
        config = load_config_text(_config_text(server.url, _closed_port_url()))
        runtimes = [ToolRuntime(config, sinks=[sink], store=store) for store in stores]
        try:
            yield server, runtimes
        finally:
            for runtime in runtimes:
                await runtime.close()


async def bench_breaker_cache(rounds: int = 3, n: int = 300) -> dict[str, float]:
    """Open-breaker and cached answers beside the live call and the hand-written floor.

    Each is timed twice: as a whole tool call (validation, request, policies, transform,
    result, events) and as the policy pipeline alone, which is the part these policies add.
    """
    async with (
        _setup(MemoryStore()) as (server, [runtime]),
        aiohttp.ClientSession() as session,
        _devnull() as sink,
    ):
        floor = _floor(session, server.url, server.api_key)
        live = _tool(runtime, "get_customer", None)
        cached = _tool(runtime, "get_customer_cached", None)
        await _trip(runtime, "get_customer_dead")
        is_open = _tool(runtime, "get_customer_dead", "circuit_open")
        pipelines = Pipelines(runtime.config, Emitter([sink]), store=MemoryStore())
        tools = runtime.config.tools
        cached_policies = _policies_only(pipelines, tools["get_customer_cached"])
        open_policies = _policies_only(pipelines, tools["get_customer_dead"])
        for _ in range(5):
            await open_policies(0)  # trips this pipeline's own breaker
        calls = {
            "floor": floor,
            "live": live,
            "cached": cached,
            "open": is_open,
            "cached_policies": cached_policies,
            "open_policies": open_policies,
        }
        for call in calls.values():
            await _median_ms(call, 50, 1_000_000)
        figures: dict[str, list[float]] = {name: [] for name in calls}
        for r in range(rounds):
            for name, call in calls.items():
                figures[name].append(await _median_ms(call, n, r * n))
        await pipelines.close()
    out = {f"{k}_ms": statistics.median(v) for k, v in figures.items()}
    out["live_vs_floor"] = out["live_ms"] / out["floor_ms"]
    for kind in ("cached", "open", "cached_policies", "open_policies"):
        out[f"{kind}_speedup"] = out["live_ms"] / out[f"{kind}_ms"]
    for line in report_breaker_cache(out):
        print(line, flush=True)
    return out


def _policies_only(pipelines: Pipelines, tool: Tool) -> Call:
    """The policy pipeline alone (exchange, request, policies), without the runtime around it."""

    async def call(i: int) -> Any:
        exchange = pipelines.exchange(tool, CallContext(id=f"q{i}"))
        args = {"customer_id": JAMIE}
        request = build_request(tool, exchange.integration, args, exchange.call)
        try:
            return await pipelines.send(exchange)(request, exchange)
        except CircuitOpen:
            return None

    return call


def report_breaker_cache(r: dict[str, float]) -> list[str]:
    """Lines for the bench report."""
    lines = [
        f"one GET, hand-written floor: {r['floor_ms']:.3f} ms; patchbay live call "
        f"{r['live_ms']:.3f} ms ({r['live_vs_floor']:.2f}x floor)",
    ]
    for kind, what in (("cached", "cached read"), ("open", "breaker open")):
        lines.append(
            f"{what}: whole tool call {r[f'{kind}_ms']:.3f} ms, "
            f"{r[f'{kind}_speedup']:.1f}x faster than the live call "
            f"({r['floor_ms'] / r[f'{kind}_ms']:.1f}x faster than the floor); policies alone "
            f"{r[f'{kind}_policies_ms']:.3f} ms, {r[f'{kind}_policies_speedup']:.1f}x faster "
            "than the live call (target >= 10x)"
        )
    return lines


@asynccontextmanager
async def _redis_server() -> AsyncIterator[str | None]:
    """A private redis-server on a free loopback port, or None when none is installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                break
            except OSError:
                if time.monotonic() > deadline or proc.returncode is not None:
                    raise RuntimeError("redis-server did not start") from None
                await asyncio.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        await proc.wait()


@asynccontextmanager
async def _given(url: str) -> AsyncIterator[str | None]:
    yield url


class CountingStore:
    """Counts the operations a store is asked for (to say how many round trips a call makes)."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.ops: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def counted(*args: Any, **kw: Any) -> Any:
            self.ops[name] += 1
            return await method(*args, **kw)

        return counted


def _pay(runtime: ToolRuntime, tag: str) -> Call:
    """A payment of one cent per call, each its own phone call (so its own ledger key)."""
    invoices = itertools.cycle([f"inv_{2000 + k}" for k in range(1, 13)])

    async def call(i: int) -> Any:
        args = {"invoice_id": next(invoices), "amount": 1}
        result = await runtime.call_tool("pay_invoice", args, f"{tag}{i}")
        if not result.ok:
            raise RuntimeError(result.to_json())
        await runtime.end_call(f"{tag}{i}")

    return call


_KINDS = {
    "live": ("live GET", lambda rt, tag: _tool(rt, "get_customer", None)),
    "cached": ("cached GET", lambda rt, tag: _tool(rt, "get_customer_cached", None)),
    "pay": ("payment", _pay),
}


async def bench_redis_overhead(
    redis_url: str | None = None, rounds: int = 3, n: int = 300
) -> dict[str, float]:
    """Per-call cost of Redis state against memory: a live GET, a cached GET, a payment.

    Every stateful policy is on: breaker, rate limit and quota on each call, the cache on the
    cached read, the idempotency ledger on the payment (each with a key of its own). Each tool
    call is its own phone call, so the runtime's call-state reads and deletes are included.
    """
    async with _redis_server() if redis_url is None else _given(redis_url) as url:
        if url is None:
            print("redis overhead: skipped (no redis-server installed)", flush=True)
            return {}
        redis_store = open_store(url, key_prefix=f"patchbay-bench:{uuid.uuid4().hex}:")
        counting = CountingStore(MemoryStore())
        async with (
            _setup(MemoryStore(), redis_store, counting) as (server, [memory, redis, counted]),
            aiohttp.ClientSession() as session,
        ):
            ops: dict[str, float] = {}
            for kind, (_, make) in _KINDS.items():
                call = make(counted, f"count-{kind}-")
                await call(0)  # fills the cache for the cached read
                counting.ops.clear()
                for i in range(1, 101):
                    await call(i)
                ops[f"{kind}_store_ops"] = sum(counting.ops.values()) / 100
            calls = {"floor": _floor(session, server.url, server.api_key)}
            for kind, (_, make) in _KINDS.items():
                calls[f"{kind}_memory"] = make(memory, f"m{kind}-")
                calls[f"{kind}_redis"] = make(redis, f"r{kind}-")
            for call in calls.values():
                await _median_ms(call, 30, 10_000_000)
            figures: dict[str, list[float]] = {name: [] for name in calls}
            for r in range(rounds):
                for name, call in calls.items():
                    figures[name].append(await _median_ms(call, n, r * n))
    out = {f"{k}_ms": statistics.median(v) for k, v in figures.items()}
    out.update(ops)
    for kind in _KINDS:
        out[f"{kind}_overhead_ms"] = out[f"{kind}_redis_ms"] - out[f"{kind}_memory_ms"]
    for line in report_redis_overhead(out):
        print(line, flush=True)
    return out


def report_redis_overhead(r: dict[str, float]) -> list[str]:
    """Lines for the bench report."""
    floor = r["floor_ms"]
    lines = [f"one GET, hand-written floor: {floor:.3f} ms"]
    for kind, (what, _) in _KINDS.items():
        memory, redis = r[f"{kind}_memory_ms"], r[f"{kind}_redis_ms"]
        lines.append(
            f"{what}: memory {memory:.3f} ms ({memory / floor:.2f}x floor), redis "
            f"{redis:.3f} ms ({redis / floor:.2f}x floor): redis adds "
            f"{r[f'{kind}_overhead_ms']:+.3f} ms per call, "
            f"{r[f'{kind}_store_ops']:.1f} store operations per call"
        )
    return lines


if __name__ == "__main__":

    async def _main() -> None:
        await bench_breaker_cache()
        await bench_redis_overhead()

    asyncio.run(_main())
