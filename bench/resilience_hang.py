"""A hung API against the tool's budget: how late past its budget does the caller hear back?

The upstream is the example billing API in its own process behind a FaultProxy that never
answers `GET /customers/...`. Each tool call has a budget of `budget_s` and a per-attempt
timeout far beyond it, so only the budget can end the wait. Calls run one at a time and then
`concurrency` at once (the event loop busy with many hung calls). Target: p99 within the
budget plus 50 ms.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

import yaml

from patchbay import ToolRuntime
from patchbay.spec import load_config_text
from patchbay.testing import BillingServer, Fault, FaultProxy

TARGET_MARGIN_MS = 50.0


def _config(url: str, budget_s: float) -> str:
    data = {
        "version": 1,
        "integrations": {
            "billing": {
                "base_url": url,
                "auth": {"type": "api_key", "header": "X-API-Key", "secret": "env:BILLING_API_KEY"},
                "timeout_s": 30,
                "retry": {"attempts": 3, "backoff_s": 0.05, "max_backoff_s": 0.2},
            }
        },
        "tools": {
            "get_customer": {
                "integration": "billing",
                "description": "Fetch a customer by id.",
                "parameters": {"customer_id": {"type": "string"}},
                "request": {"method": "GET", "path": "/customers/{customer_id}"},
                "say": {"timeout": "Billing is slow right now; let me take your number."},
                "budget_s": budget_s,
            }
        },
    }
    return yaml.safe_dump(data)


def _percentile(sorted_ms: list[float], q: float) -> float:
    index = min(len(sorted_ms) - 1, max(0, round(q * (len(sorted_ms) - 1))))
    return sorted_ms[index]


async def _timed(rt: ToolRuntime, i: int) -> float:
    started = time.perf_counter()
    result = await rt.call_tool("get_customer", {"customer_id": "cus_8F2kLq"}, f"hang-{i}")
    elapsed = (time.perf_counter() - started) * 1000
    if result.error is None or result.error.code != "timeout":
        raise AssertionError(f"expected a timeout, got {result.to_dict()}")
    return elapsed


def _summary(latencies_ms: list[float], budget_ms: float) -> dict[str, float]:
    ordered = sorted(latencies_ms)
    return {
        "calls": float(len(ordered)),
        "budget_ms": budget_ms,
        "p50_ms": statistics.median(ordered),
        "p99_ms": _percentile(ordered, 0.99),
        "max_ms": ordered[-1],
        "p99_over_budget_ms": _percentile(ordered, 0.99) - budget_ms,
    }


async def bench_hang(
    calls: int = 100, concurrency: int = 50, budget_s: float = 0.5, quiet: bool = False
) -> dict[str, Any]:
    """Time tool calls whose API hangs; print and return p50/p99 against the budget."""
    budget_ms = budget_s * 1000
    async with BillingServer() as billing, FaultProxy(billing.url) as proxy:
        proxy.add(Fault("hang", path_prefix="/customers/"))
        env = {**os.environ, "BILLING_API_KEY": billing.api_key}
        os.environ["BILLING_API_KEY"] = billing.api_key  # read by the env: secret provider
        config = load_config_text(_config(proxy.url, budget_s), env=env)
        async with ToolRuntime(config, sinks=[]) as rt:
            sequential = [await _timed(rt, i) for i in range(calls)]
            rounds = max(1, calls // concurrency)
            concurrent: list[float] = []
            for r in range(rounds):
                batch = range(calls + r * concurrency, calls + (r + 1) * concurrency)
                concurrent += await asyncio.gather(*(_timed(rt, i) for i in batch))
    results: dict[str, Any] = {
        "sequential": _summary(sequential, budget_ms),
        f"{concurrency} at once": _summary(concurrent, budget_ms),
        "target_p99_ms": budget_ms + TARGET_MARGIN_MS,
    }
    if not quiet:
        for name in ("sequential", f"{concurrency} at once"):
            s = results[name]
            verdict = "ok" if s["p99_ms"] <= results["target_p99_ms"] else "MISSED"
            print(
                f"hung API, budget {budget_ms:.0f} ms, {name} ({s['calls']:.0f} calls): "
                f"p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms "
                f"({s['p99_over_budget_ms']:+.1f} ms against the budget), "
                f"max {s['max_ms']:.1f} ms; "
                f"target p99 <= {results['target_p99_ms']:.0f} ms: {verdict}",
                flush=True,
            )
    return results


if __name__ == "__main__":
    asyncio.run(bench_hang())
