"""The caller interrupts and the agent cancels a tool call: reads stop, sent writes finish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from patchbay import CallContext, ToolRuntime
from patchbay.observe import MemorySink
from patchbay.testing import BillingServer, Fault, FaultProxy

RuntimeFactory = Callable[..., ToolRuntime]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "billing" / "patchbay.yaml"
PAY_1001 = {"invoice_id": "inv_1001", "amount": 24700, "payment_method_id": "pm_card_visa4242"}


async def _until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.005)


async def test_cancelling_a_read_stops_it_at_once(
    make_runtime: RuntimeFactory, proxy: FaultProxy, billing: BillingServer
) -> None:
    rt = make_runtime(fast=False)
    proxy.add(Fault("hang", path_prefix="/customers/"))
    task = asyncio.create_task(rt.call_tool("get_customer", {"customer_id": "cus_8F2kLq"}, "c-r"))
    await _until(lambda: proxy.stats().total == 1)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.05
    await asyncio.sleep(0.3)
    await rt.drain()
    assert proxy.stats().total == 1, "no retry, no background finish for a read"
    assert (await billing.ledger())["requests"] == 0


async def test_cancelling_a_sent_write_still_completes_it_once(
    make_runtime: RuntimeFactory, proxy: FaultProxy, billing: BillingServer
) -> None:
    sink = MemorySink()
    rt = make_runtime(fast=False, sink=sink)
    call = CallContext(id="c-w")
    assert (await rt.call_tool("lookup_customer_invoices", {"phone": "+15551234567"}, call)).ok
    proxy.add(Fault("slow", method="POST", delay_s=0.3))
    task = asyncio.create_task(rt.call_tool("create_payment", PAY_1001, call))
    await _until(lambda: proxy.stats().by_path.get("POST /payments", 0) == 1)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.05, "the caller is not held up by the write"
    assert (await billing.ledger())["charges_by_invoice"] == {}, "still in flight"
    await rt.drain()
    ledger = await billing.ledger()
    assert ledger["charges_by_invoice"] == {"inv_1001": 1}
    assert proxy.stats().by_path["POST /payments"] == 1, "finished, not sent again"
    [event] = sink.of_kind("background")
    assert (event.outcome, event.extra["key"]) == ("ok", "call_c-w_invoice_inv_1001")
    recorded = await rt.background_outcome("c-w", "call_c-w_invoice_inv_1001")
    assert recorded is not None
    assert recorded["result"]["confirmation_number"] == ledger["payments"][0]["confirmation_number"]


async def test_cancelling_a_write_before_it_is_sent_sends_nothing(
    make_runtime: RuntimeFactory, proxy: FaultProxy, billing: BillingServer
) -> None:
    # A slow rate limit holds the payment before it leaves: that is where the cancel lands.
    text = EXAMPLE.read_text().replace(
        "    timeout_s: 2\n", "    timeout_s: 2\n    rate_limit: {per_second: 1, burst: 1}\n", 1
    )
    sink = MemorySink()
    rt = make_runtime(text, fast=False, sink=sink)
    call = CallContext(id="c-unsent")
    assert (await rt.call_tool("lookup_customer_invoices", {"phone": "+15551234567"}, call)).ok
    before = proxy.stats().total
    task = asyncio.create_task(rt.call_tool("create_payment", PAY_1001, call))
    await _until(lambda: any(e.outcome == "rate_wait" for e in sink.of_kind("policy")))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await rt.drain()
    await asyncio.sleep(1.5)  # past the slot the limiter had reserved
    assert proxy.stats().total == before
    assert (await billing.ledger())["charges_by_invoice"] == {}
    assert sink.of_kind("background") == []
