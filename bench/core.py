"""The core benchmark: the example lookup through patchbay beside hand-written handlers.

All hit the same example billing API (a separate process on loopback) in the same run. The
hand-written handler runs on aiohttp and on pyreqwest, the fastest plain clients measured for
the choice of transport; the faster of the two in each measure is the floor. patchbay runs
with every layer on (validation, auth, policies, transform, events written as JSON lines),
with its default transport and on AiohttpTransport. Each side's client CPU per lookup is
printed beside it (pyreqwest's includes its own I/O thread).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pyreqwest.client

from patchbay import CallContext, ToolRuntime, load_config
from patchbay.http import AiohttpTransport
from patchbay.observe import JsonLinesSink
from patchbay.testing import BillingServer

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "billing", "patchbay.yaml")
Lookup = Callable[[int], Awaitable[Any]]


def answer(customer: dict[str, Any], invoices: list[dict[str, Any]]) -> dict[str, Any]:
    """What the hand-written handlers give the LLM: the customer and their open invoices."""
    return {
        "customer_name": customer["name"],
        "invoice_count": len(invoices),
        "total_outstanding": sum(i["amount"] for i in invoices),
        "invoices": [
            {"id": i["id"], "amount": i["amount"], "due_date": i["due_date"]} for i in invoices
        ],
    }


def hand_written(session: aiohttp.ClientSession, url: str, key: str) -> Lookup:
    """The example lookup hand-written on a plain aiohttp session: the floor patchbay is held to."""
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
        return answer(customer, invoices)

    return lookup


def hand_written_reqwest(client: pyreqwest.client.Client, url: str, key: str) -> Lookup:
    """The same handler on pyreqwest (Rust's reqwest): the other fastest plain client."""
    headers = {"X-API-Key": key}

    async def lookup(i: int) -> dict[str, Any]:
        search = client.get(f"{url}/customers/search").query({"phone": "+15551234567"})
        resp = await search.headers(headers).build().send()
        customer = (await resp.json())["data"]["customer"]
        listing = client.get(f"{url}/invoices")
        listing = listing.query({"customer_id": customer["id"], "status": "open"})
        resp = await listing.headers(headers).build().send()
        invoices = await resp.json()
        return answer(customer, invoices)

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


async def sequential(lookup: Lookup, n: int) -> tuple[float, float]:
    """Median milliseconds of n lookups one after another, and this process's CPU µs per lookup."""
    times = []
    cpu = time.process_time()
    for i in range(n):
        t0 = time.perf_counter()
        await lookup(i)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), (time.process_time() - cpu) * 1e6 / n


async def concurrent(lookup: Lookup, total: int, in_flight: int) -> tuple[float, float]:
    """Lookups per second with `in_flight` running at once, and CPU µs per lookup."""
    sem = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with sem:
            await lookup(i)

    cpu = time.process_time()
    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(total)))
    elapsed = time.perf_counter() - t0
    return total / elapsed, (time.process_time() - cpu) * 1e6 / total


FLOORS = ("aiohttp", "reqwest")
SIDES = ("patchbay", "patchbay_aiohttp")


async def bench_core(rounds: int = 11, n: int = 200, total: int = 2000) -> dict[str, float]:
    """Run every side interleaved over several rounds; report medians and ratios.

    Sides: the hand-written handler on aiohttp and on pyreqwest (the two fastest plain clients
    measured; the faster of them in each measure is the floor), patchbay with its default
    transport, and patchbay on AiohttpTransport (what the choice of HTTP client is worth).
    """
    async with BillingServer() as server:
        env = {**os.environ, "BILLING_URL": server.url, "BILLING_API_KEY": server.api_key}
        os.environ["BILLING_API_KEY"] = server.api_key
        config = load_config(EXAMPLE, env=env)
        devnull = open(os.devnull, "w")  # noqa: SIM115, ASYNC230 - a null device does not block
        connector = aiohttp.TCPConnector(limit=100)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            pyreqwest.client.ClientBuilder().max_connections(100).build() as reqwest,
            ToolRuntime(config, sinks=[JsonLinesSink(devnull)]) as runtime,
            ToolRuntime(
                config, sinks=[JsonLinesSink(devnull)], transport=AiohttpTransport()
            ) as on_aiohttp,
        ):
            lookups = {
                "aiohttp": hand_written(session, server.url, server.api_key),
                "reqwest": hand_written_reqwest(reqwest, server.url, server.api_key),
                "patchbay": through_patchbay(runtime),
                "patchbay_aiohttp": through_patchbay(on_aiohttp),
            }
            for lookup in lookups.values():
                await sequential(lookup, 50)
                await concurrent(lookup, 200, 64)
            figures: dict[str, list[float]] = {}
            for _ in range(rounds):
                for side, lookup in lookups.items():
                    seq, seq_cpu = await sequential(lookup, n)
                    thr, thr_cpu = await concurrent(lookup, total, 64)
                    for name, value in (
                        ("seq_ms", seq),
                        ("seq_cpu_us", seq_cpu),
                        ("thr_per_s", thr),
                        ("thr_cpu_us", thr_cpu),
                    ):
                        figures.setdefault(f"{side}_{name}", []).append(value)
        devnull.close()
    out = {name: statistics.median(values) for name, values in figures.items()}
    # The floor is the faster plain client in each measure.
    seq_floor = min(FLOORS, key=lambda side: out[f"{side}_seq_ms"])
    thr_floor = max(FLOORS, key=lambda side: out[f"{side}_thr_per_s"])
    out["floor_seq_ms"] = out[f"{seq_floor}_seq_ms"]
    out["floor_thr_per_s"] = out[f"{thr_floor}_thr_per_s"]
    for side in SIDES:
        out[f"{side}_seq_ratio"] = out[f"{side}_seq_ms"] / out["floor_seq_ms"]
        out[f"{side}_thr_ratio"] = out[f"{side}_thr_per_s"] / out["floor_thr_per_s"]
    return out


def report_core(r: dict[str, float]) -> list[str]:
    """Lines for the bench report, with the targets of the core issue."""
    lines = []
    for side in FLOORS:
        lines.append(
            f"hand-written on {side}: sequential median {r[f'{side}_seq_ms']:.3f} ms, "
            f"64 in flight {r[f'{side}_thr_per_s']:.0f}/s; "
            f"client CPU per lookup {r[f'{side}_seq_cpu_us']:.0f} / "
            f"{r[f'{side}_thr_cpu_us']:.0f} µs"
        )
    lines.append(
        f"floor (the faster plain client in each): {r['floor_seq_ms']:.3f} ms, "
        f"{r['floor_thr_per_s']:.0f}/s"
    )
    for side, label in (("patchbay", "patchbay"), ("patchbay_aiohttp", "patchbay on aiohttp")):
        lines += [
            f"{label}: sequential median {r[f'{side}_seq_ms']:.3f} ms, "
            f"ratio {r[f'{side}_seq_ratio']:.3f}x (target <= 1.15x)",
            f"{label}: 64 in flight {r[f'{side}_thr_per_s']:.0f}/s, "
            f"ratio {r[f'{side}_thr_ratio']:.3f}x (target >= 0.85x); "
            f"client CPU per lookup {r[f'{side}_seq_cpu_us']:.0f} / "
            f"{r[f'{side}_thr_cpu_us']:.0f} µs",
        ]
    return lines
