"""Read cache and idempotency ledger against the real billing API behind a fault proxy."""

from __future__ import annotations

import asyncio
from typing import Any

from patchbay import CallContext
from patchbay.testing import BillingServer, Fault, FaultProxy

from .support import JAMIE, PAYMENT, RuntimeFactory, billing_yaml

CUSTOMER = {"customer_id": JAMIE}
CACHE = {"get_customer": {"cache": {"ttl_s": 60}}}
SHORT = {"get_customer": {"cache": {"ttl_s": 0.1, "stale_if_error_s": 60}, "budget_s": 0.5}}


async def test_a_cached_read_makes_no_request(
    make_runtime: RuntimeFactory, proxy: FaultProxy
) -> None:
    rt = make_runtime(billing_yaml(tools=CACHE))
    first = await rt.call_tool("get_customer", CUSTOMER, "c-1")
    second = await rt.call_tool("get_customer", CUSTOMER, "c-2")
    assert first.ok and second.ok and second.result == first.result
    assert second.meta["cached"] and not first.meta["cached"]
    assert proxy.stats().total == 1


async def test_tenants_never_share_cached_answers(
    make_runtime: RuntimeFactory, proxy: FaultProxy, billing: BillingServer
) -> None:
    tenants: dict[str, Any] = {"tenants": {"acme": {}, "globex": {}}}
    rt = make_runtime(billing_yaml(tenants, CACHE))
    for tenant in ("acme", "globex", "acme", "globex"):
        result = await rt.call_tool("get_customer", CUSTOMER, CallContext(id="c", tenant=tenant))
        assert result.ok
    assert proxy.stats().total == 2, "one request per tenant, then each hits its own entry"


async def test_stale_if_error_when_the_api_fails_or_hangs(
    make_runtime: RuntimeFactory, proxy: FaultProxy
) -> None:
    rt = make_runtime(billing_yaml(tools=SHORT), fast=False)
    good = await rt.call_tool("get_customer", CUSTOMER, "c-1")
    assert good.ok
    for fault in (Fault("status", status=503), Fault("reset"), Fault("hang")):
        await asyncio.sleep(0.12)  # past the TTL, inside the stale window
        proxy.clear()
        proxy.add(fault)
        result = await rt.call_tool("get_customer", CUSTOMER, f"c-{fault.kind}")
        assert result.ok, result.to_dict()
        assert result.result == good.result
        assert result.meta["stale"] is True and result.meta["cached"] is True
        assert result.meta["latency_ms"] < 500
    proxy.clear()
    await asyncio.sleep(0.12)
    fresh = await rt.call_tool("get_customer", CUSTOMER, "c-fresh")
    assert fresh.ok and not fresh.meta["cached"] and "stale" not in fresh.meta


async def test_a_double_payment_is_one_charge(
    make_runtime: RuntimeFactory, proxy: FaultProxy, billing: BillingServer
) -> None:
    rt = make_runtime(billing_yaml())
    first = await rt.call_tool("pay_invoice", PAYMENT, "call-1")
    second = await rt.call_tool("pay_invoice", PAYMENT, "call-1")
    assert first.ok and second.ok, (first.to_dict(), second.to_dict())
    assert second.result == first.result
    assert second.meta["deduplicated"] is True
    assert proxy.stats().by_path == {"POST /payments": 1}
    assert (await billing.ledger())["charges_by_invoice"] == {"inv_2001": 1}


async def test_concurrent_duplicates_wait_for_the_first(
    make_runtime: RuntimeFactory, proxy: FaultProxy, billing: BillingServer
) -> None:
    proxy.add(Fault("slow", method="POST", delay_s=0.2))
    rt = make_runtime(billing_yaml())
    results = await asyncio.gather(
        *(rt.call_tool("pay_invoice", PAYMENT, "call-1") for _ in range(4))
    )
    assert all(r.ok for r in results), [r.to_dict() for r in results]
    assert len({r.result["confirmation_number"] for r in results}) == 1
    assert sum(1 for r in results if r.meta.get("deduplicated")) == 3
    assert proxy.stats().by_path == {"POST /payments": 1}
    assert (await billing.ledger())["charges_by_invoice"] == {"inv_2001": 1}


async def test_a_failed_payment_can_be_retried_and_a_rejected_one_is_remembered(
    make_runtime: RuntimeFactory, proxy: FaultProxy, billing: BillingServer
) -> None:
    rt = make_runtime(billing_yaml())
    proxy.add(Fault("status", status=503, times=1))
    failed = await rt.call_tool("pay_invoice", PAYMENT, "call-1")
    # A 503 may come after the charge: pending, and confirmed in the background with the key.
    assert failed.error is not None and failed.error.code == "pending"
    retried = await rt.call_tool("pay_invoice", PAYMENT, "call-1")
    assert retried.ok
    await rt.drain()

    too_much = {**PAYMENT, "invoice_id": "inv_2002", "amount": 10_000_000}
    rejected = [await rt.call_tool("pay_invoice", too_much, "call-1") for _ in range(2)]
    assert all(r.error is not None and r.error.code == "client_error" for r in rejected)
    assert rejected[1].meta["deduplicated"]
    assert proxy.stats().by_path == {"POST /payments": 3}
    assert (await billing.ledger())["charges_by_invoice"] == {"inv_2001": 1}
