"""`make bench`: every benchmark, each printing ratios against a floor measured in the same run."""

from __future__ import annotations

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples", "billing"))

from core import bench_core, report_core  # noqa: E402


async def main() -> None:
    print("== core: the example lookup (customer search + open invoices) ==", flush=True)
    for line in report_core(await bench_core()):
        print(line, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
