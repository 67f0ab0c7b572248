"""`make bench`: every benchmark, each printing ratios against a floor measured in the same run.

The machine is shared and noisy: read the ratios, not the absolute figures. Pass section names
(core, resilience, hang, redis, gateway, tracing, observe, callevents, webhooks, cli, import) to
run only those.
"""

from __future__ import annotations

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from callevents import bench_callevents
from cli_start import bench_cli_start
from contracts import bench_contracts
from core import bench_core, report_core
from importing import bench_import
from redis_trips import bench_redis_trips
from resilience_hang import bench_hang
from tracing import bench_tracing
from webhooks import bench_webhooks
from webhooks_gateway import bench_webhooks_gateway

from gateway import bench_gateway
from observe import bench_observe, report_observe
from resilience import (
    bench_breaker_cache,
    bench_redis_overhead,
)


async def _core() -> None:
    for line in report_core(await bench_core()):
        print(line, flush=True)


async def _resilience() -> None:
    await bench_breaker_cache()  # prints its own lines


async def _redis() -> None:
    await bench_redis_trips()  # a tool call in a live phone call: round trips and added ms
    await bench_redis_overhead()  # a whole phone call of one tool call; prints its own lines


async def _callevents() -> None:
    await bench_callevents()  # prints its own lines


async def _webhooks() -> None:
    await bench_webhooks()  # prints its own lines
    await bench_webhooks_gateway()  # through `patchbay serve`, beside its tool-call rate


async def _hang() -> None:
    await bench_hang()


async def _gateway() -> None:
    await bench_gateway()


async def _tracing() -> None:
    for line in await bench_tracing():
        print(line, flush=True)


async def _contracts() -> None:
    for line in await bench_contracts():
        print(line, flush=True)


async def _observe() -> None:
    for line in report_observe(await bench_observe()):
        print(line, flush=True)


async def _import() -> None:
    for line in bench_import():
        print(line, flush=True)


async def _cli() -> None:
    for line in bench_cli_start():
        print(line, flush=True)


SECTIONS = {
    "core": ("the example lookup (customer search + open invoices)", _core),
    "resilience": ("breaker open and cached reads against a live call", _resilience),
    "hang": ("a hung API against the tool's budget", _hang),
    "redis": ("Redis state against memory, per call", _redis),
    "gateway": ("the gateway: POST /vapi at 64 callers against in-process calls", _gateway),
    "tracing": ("OpenTelemetry tracing on against off, 64 lookups in flight", _tracing),
    "contracts": (
        "response contracts: get_customer with response.expect against without",
        _contracts,
    ),
    "observe": ("the audit sink (and every file sink) per call, on against off", _observe),
    "callevents": ("call events: publish to delivery at 200/s, one replica and two", _callevents),
    "webhooks": ("webhooks: receipt to delivery at 200/s, durable acceptance rates", _webhooks),
    "cli": ("CLI start-up: each command as a subprocess against `python -c pass`", _cli),
    "import": ("patchbay import openapi on Stripe's document (target: under 10 s)", _import),
}


async def main(names: list[str]) -> None:
    for name in names or list(SECTIONS):
        title, run = SECTIONS[name]
        print(f"\n== {name}: {title} ==", flush=True)
        await run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
