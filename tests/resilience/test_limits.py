"""Breaker, rate limit and quotas against the real billing API behind a fault proxy."""

from __future__ import annotations

import asyncio
import time

from patchbay.observe import MemorySink
from patchbay.testing import BillingServer, Fault, FaultProxy

from .support import JAMIE, RuntimeFactory, billing_yaml

CUSTOMER = {"customer_id": JAMIE}
BREAKER = {"breaker": {"failure_rate": 0.5, "window": 10, "min_calls": 5, "open_s": 0.5}}


async def test_breaker_opens_fails_fast_then_probes_and_closes(
    make_runtime: RuntimeFactory, proxy: FaultProxy
) -> None:
    sink = MemorySink()
    rt = make_runtime(billing_yaml(BREAKER), sink=sink)
    proxy.add(Fault("status", status=503, path_prefix="/customers/"))
    for i in range(5):
        result = await rt.call_tool("get_customer", CUSTOMER, f"c-{i}")
        assert result.error is not None and result.error.code == "upstream_unavailable"
    assert proxy.stats().total == 5

    started = time.perf_counter()
    refused = [await rt.call_tool("get_customer", CUSTOMER, f"o-{i}") for i in range(50)]
    per_call_ms = (time.perf_counter() - started) * 1000 / 50
    assert all(r.error is not None and r.error.code == "circuit_open" for r in refused)
    assert refused[0].say == "I can't reach billing right now."
    assert proxy.stats().total == 5, "no request reaches the API while the breaker is open"
    assert per_call_ms < 1.0, f"{per_call_ms:.3f} ms per call while open"

    proxy.clear()  # the API recovers
    await asyncio.sleep(0.55)
    probes = [await rt.call_tool("get_customer", CUSTOMER, f"p-{i}") for i in range(2)]
    assert all(p.ok for p in probes), [p.to_dict() for p in probes]
    after = await rt.call_tool("get_customer", CUSTOMER, "after")
    assert after.ok and after.result == {"customer_name": "Jamie Patel", "status": "active"}
    outcomes = [e.outcome for e in sink.of_kind("policy")]
    assert outcomes.count("breaker_opened") == 1
    assert outcomes.count("breaker_half_open") == 1
    assert outcomes.count("breaker_closed") == 1


async def test_client_errors_never_open_the_breaker(
    make_runtime: RuntimeFactory, proxy: FaultProxy
) -> None:
    rt = make_runtime(billing_yaml(BREAKER))
    for i in range(20):
        result = await rt.call_tool("get_customer", {"customer_id": "cus_nobody"}, f"c-{i}")
        assert result.error is not None and result.error.code == "not_found"
        assert result.error.message == "customer not found"
    assert proxy.stats().total == 20


async def test_rate_limit_holds_the_rate_the_api_sees(
    make_runtime: RuntimeFactory, proxy: FaultProxy
) -> None:
    rate, burst = 20, 2
    text = billing_yaml(
        {"rate_limit": {"per_second": rate, "burst": burst}}, {"get_customer": {"budget_s": 5}}
    )
    rt = make_runtime(text, fast=False)
    started = time.monotonic()
    results = await asyncio.gather(
        *(rt.call_tool("get_customer", CUSTOMER, f"c-{i}") for i in range(40))
    )
    elapsed = time.monotonic() - started
    assert all(r.ok for r in results)
    stats = proxy.stats()
    assert stats.total == 40
    # GCRA lets rate + burst into any second; one more for a request delayed into the next.
    assert stats.max_in_window(1.0) <= rate + burst + 1, stats.per_second
    assert elapsed >= (40 - burst) / rate - 0.05


async def test_rate_limit_refuses_when_the_wait_does_not_fit(
    make_runtime: RuntimeFactory, proxy: FaultProxy
) -> None:
    text = billing_yaml(
        {"rate_limit": {"per_second": 2, "burst": 1}}, {"get_customer": {"budget_s": 0.3}}
    )
    rt = make_runtime(text, fast=False)
    results = await asyncio.gather(
        *(rt.call_tool("get_customer", CUSTOMER, f"c-{i}") for i in range(5))
    )
    codes = sorted(r.error.code if r.error else "ok" for r in results)
    assert codes == ["ok", "rate_limited", "rate_limited", "rate_limited", "rate_limited"]
    assert proxy.stats().total == 1


async def test_a_runaway_loop_in_one_call_is_stopped(
    make_runtime: RuntimeFactory, proxy: FaultProxy
) -> None:
    # A handler makes two requests per tool call; the quota counts tool calls.
    rt = make_runtime(billing_yaml(tools={"lookup_customer_invoices": {"quota": {"per_call": 3}}}))
    results = [
        await rt.call_tool("lookup_customer_invoices", {"phone": "+15551234567"}, "loop")
        for _ in range(6)
    ]
    assert [r.ok for r in results] == [True, True, True, False, False, False]
    stopped = results[3].error
    assert stopped is not None and stopped.code == "quota_exceeded"
    assert stopped.message.startswith("lookup_customer_invoices was already called 3 times")
    assert proxy.stats().total == 6
    other = await rt.call_tool("lookup_customer_invoices", {"phone": "+15551234567"}, "next")
    assert other.ok


async def test_daily_quota(
    make_runtime: RuntimeFactory, proxy: FaultProxy, billing: BillingServer
) -> None:
    rt = make_runtime(billing_yaml({"quota": {"per_day": 3}}))
    results = [await rt.call_tool("get_customer", CUSTOMER, f"c-{i}") for i in range(5)]
    assert [r.ok for r in results] == [True, True, True, False, False]
    assert results[4].error is not None and results[4].error.code == "quota_exceeded"
    assert proxy.stats().total == 3
