"""The core benchmark: the example lookup through patchbay beside a hand-written handler.

Both hit the same example billing API (a separate process on loopback) in the same run, so
the ratio measures what patchbay adds: validation, auth, policies, transform and events.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from patchbay import CallContext, ToolRuntime, load_config
from patchbay.observe import JsonLinesSink
from patchbay.testing import BillingServer

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "billing", "patchbay.yaml")
Lookup = Callable[[int], Awaitable[Any]]


def hand_written(session: aiohttp.ClientSession, url: str, key: str) -> Lookup:
    """The article's handler on a plain aiohttp session: the floor patchbay is held to."""
    headers = {"X-API-Key": key}

    async def lookup(i: int) -> dict[str, Any]:
        async with session.get(
            f"{url}/customers/search", params={"phone": "+15551234567"}, headers=headers
        ) as resp:
            customer = (await resp.json())["data"]["customer"]
        async with session.get(
            f"{url}/invoices",
            params={"customer_id": customer["id"], "status": "open"},
            headers=headers,
        ) as resp:
            invoices = await resp.json()
        return {
            "customer_name": customer["name"],
            "invoice_count": len(invoices),
            "total_outstanding": sum(i["amount"] for i in invoices),
            "invoices": [
                {"id": i["id"], "amount": i["amount"], "due_date": i["due_date"]} for i in invoices
            ],
        }

    return lookup


def through_patchbay(runtime: ToolRuntime) -> Lookup:
    """The same lookup as a patchbay tool call, every layer on."""

    async def lookup(i: int) -> Any:
        result = await runtime.call_tool(
            "lookup_customer_invoices", {"phone": "555-123-4567"}, CallContext(id=f"b-{i}")
        )
        if not result.ok:
            raise RuntimeError(result.to_json())
        await runtime.end_call(f"b-{i}")
        return result

    return lookup


async def sequential(lookup: Lookup, n: int) -> float:
    """Median milliseconds of n lookups one after another."""
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        await lookup(i)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def concurrent(lookup: Lookup, total: int, in_flight: int) -> float:
    """Lookups per second with `in_flight` running at once."""
    sem = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with sem:
            await lookup(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(total)))
    return total / (time.perf_counter() - t0)


async def bench_core(rounds: int = 3, n: int = 300, total: int = 2000) -> dict[str, float]:
    """Run both sides interleaved over several rounds; report medians and ratios."""
    async with BillingServer() as server:
        env = {**os.environ, "BILLING_URL": server.url, "BILLING_API_KEY": server.api_key}
        os.environ["BILLING_API_KEY"] = server.api_key
        config = load_config(EXAMPLE, env=env)
        devnull = open(os.devnull, "w")  # noqa: SIM115, ASYNC230 - a null device does not block
        connector = aiohttp.TCPConnector(limit=100)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            ToolRuntime(config, sinks=[JsonLinesSink(devnull)]) as runtime,
        ):
            floor = hand_written(session, server.url, server.api_key)
            ours = through_patchbay(runtime)
            await sequential(floor, 50)
            await sequential(ours, 50)
            seq_f, seq_p, thr_f, thr_p = [], [], [], []
            for _ in range(rounds):
                seq_f.append(await sequential(floor, n))
                seq_p.append(await sequential(ours, n))
                thr_f.append(await concurrent(floor, total, 64))
                thr_p.append(await concurrent(ours, total, 64))
        devnull.close()
    out = {
        "seq_floor_ms": statistics.median(seq_f),
        "seq_patchbay_ms": statistics.median(seq_p),
        "thr_floor_per_s": statistics.median(thr_f),
        "thr_patchbay_per_s": statistics.median(thr_p),
    }
    out["seq_ratio"] = out["seq_patchbay_ms"] / out["seq_floor_ms"]
    out["thr_ratio"] = out["thr_patchbay_per_s"] / out["thr_floor_per_s"]
    return out


def report_core(r: dict[str, float]) -> list[str]:
    """Lines for the bench report, with the targets of the core issue."""
    return [
        f"lookup sequential median: patchbay {r['seq_patchbay_ms']:.3f} ms, "
        f"hand-written {r['seq_floor_ms']:.3f} ms, ratio {r['seq_ratio']:.3f}x (target <= 1.15x)",
        f"lookup 64 in flight: patchbay {r['thr_patchbay_per_s']:.0f}/s, "
        f"hand-written {r['thr_floor_per_s']:.0f}/s, ratio {r['thr_ratio']:.3f}x (target >= 0.85x)",
    ]
