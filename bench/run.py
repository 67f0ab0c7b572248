"""`make bench`: every benchmark, each printing ratios against a floor measured in the same run.

The machine is shared and noisy: read the ratios, not the absolute figures. Pass section names
(core, resilience, hang, redis, gateway, cli) to run only those.
"""

from __future__ import annotations

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from cli_start import bench_cli_start
from core import bench_core, report_core
from resilience_hang import bench_hang

from gateway import bench_gateway
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
    await bench_redis_overhead()  # prints its own lines


async def _hang() -> None:
    await bench_hang()


async def _gateway() -> None:
    await bench_gateway()


async def _cli() -> None:
    for line in bench_cli_start():
        print(line, flush=True)


SECTIONS = {
    "core": ("the example lookup (customer search + open invoices)", _core),
    "resilience": ("breaker open and cached reads against a live call", _resilience),
    "hang": ("a hung API against the tool's budget", _hang),
    "redis": ("Redis state against memory, per call", _redis),
    "gateway": ("the gateway: POST /vapi at 64 callers against in-process calls", _gateway),
    "cli": ("CLI start-up: each command as a subprocess against `python -c pass`", _cli),
}


async def main(names: list[str]) -> None:
    for name in names or list(SECTIONS):
        title, run = SECTIONS[name]
        print(f"\n== {name}: {title} ==", flush=True)
        await run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
