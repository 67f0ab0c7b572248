"""Error paths against a real local server: what the caller hears when the API misbehaves."""

from __future__ import annotations

import time
from collections.abc import Callable

from patchbay import CallContext, ToolRuntime
from patchbay.observe import MemorySink
from patchbay.testing import BillingServer, Fault, FaultProxy

RuntimeFactory = Callable[..., ToolRuntime]

GET_CUSTOMER = {"customer_id": "cus_8F2kLq"}

TIGHT = """
version: 1
integrations:
  billing:
    base_url: ${BILLING_URL}
    auth: {type: api_key, header: X-API-Key, secret: env:BILLING_API_KEY}
    timeout_s: %(timeout)s
    retry: {attempts: %(attempts)s, backoff_s: 0.05, max_backoff_s: 0.2}
tools:
  get_customer:
    integration: billing
    description: Fetch a customer.
    parameters:
      customer_id: {type: string}
    request: {method: GET, path: "/customers/{customer_id}"}
    response:
      root: data.customer
      fields: {customer_name: name}
      messages: {CS_404: customer not found}
    say: {failed: "I can't reach billing right now.", timeout: "Billing is slow today."}
    budget_s: %(budget)s
"""


def tight(timeout: float = 2, attempts: int = 3, budget: float = 3) -> str:
    return TIGHT % {"timeout": timeout, "attempts": attempts, "budget": budget}


async def test_500_then_success(make_runtime: RuntimeFactory, proxy: FaultProxy) -> None:
    proxy.add(Fault("status", status=500, path_prefix="/customers/", times=1))
    rt = make_runtime()
    result = await rt.call_tool("get_customer", GET_CUSTOMER, "c-500")
    assert result.ok, result.to_dict()
    assert result.result == {
        "customer_name": "Jamie Patel",
        "status": "active",
        "account_tier": "premium",
    }
    assert result.meta["attempts"] == 2
    assert proxy.stats().total == 2


async def test_503_until_the_budget_ends(make_runtime: RuntimeFactory, proxy: FaultProxy) -> None:
    proxy.add(Fault("status", status=503))
    rt = make_runtime(tight(attempts=10, budget=1), fast=False)
    started = time.monotonic()
    result = await rt.call_tool("get_customer", GET_CUSTOMER, "c-503")
    elapsed = time.monotonic() - started
    assert not result.ok
    assert result.error is not None
    assert result.error.code in ("upstream_unavailable", "timeout")
    assert result.say in ("I can't reach billing right now.", "Billing is slow today.")
    assert elapsed < 1.5, "the budget bounds the retries"
    assert proxy.stats().total >= 2, "503 is retried"
    assert "503" not in result.error.message and "{" not in result.error.message


async def test_429_with_short_retry_after_waits_and_succeeds(
    make_runtime: RuntimeFactory, proxy: FaultProxy
) -> None:
    proxy.add(Fault("status", status=429, retry_after=1, times=1))
    rt = make_runtime(tight(budget=3), fast=False)
    started = time.monotonic()
    result = await rt.call_tool("get_customer", GET_CUSTOMER, "c-429")
    assert result.ok, result.to_dict()
    assert time.monotonic() - started >= 0.95, "Retry-After was respected"
    assert result.meta["attempts"] == 2


async def test_429_with_long_retry_after_answers_at_once(
    make_runtime: RuntimeFactory, proxy: FaultProxy
) -> None:
    proxy.add(Fault("status", status=429, retry_after=60))
    rt = make_runtime(tight(budget=3), fast=False)
    started = time.monotonic()
    result = await rt.call_tool("get_customer", GET_CUSTOMER, "c-429b")
    assert not result.ok and result.error is not None
    assert result.error.code == "rate_limited"
    assert time.monotonic() - started < 0.5, "a wait that does not fit the budget is not waited"
    assert proxy.stats().total == 1, "429 is not hammered"


async def test_other_4xx_is_not_retried(make_runtime: RuntimeFactory, proxy: FaultProxy) -> None:
    rt = make_runtime()
    result = await rt.call_tool("get_customer", {"customer_id": "cus_nobody"}, "c-404")
    assert not result.ok and result.error is not None
    assert result.error.code == "not_found"
    assert result.error.message == "customer not found"  # CS_404 turned into words
    assert proxy.stats().total == 1


async def test_connection_reset_is_retried(make_runtime: RuntimeFactory, proxy: FaultProxy) -> None:
    proxy.add(Fault("reset", times=1))
    rt = make_runtime()
    result = await rt.call_tool("get_customer", GET_CUSTOMER, "c-reset")
    assert result.ok, result.to_dict()
    # One reset, one retry: every request the API saw was one patchbay counted.
    assert result.meta["attempts"] == 2
    assert proxy.stats().faults == {"reset": 1}
    assert proxy.stats().total == 2


async def test_hanging_server_is_cut_by_the_budget(
    make_runtime: RuntimeFactory, proxy: FaultProxy
) -> None:
    proxy.add(Fault("hang"))
    rt = make_runtime(tight(timeout=5, budget=0.5), fast=False)
    started = time.monotonic()
    result = await rt.call_tool("get_customer", GET_CUSTOMER, "c-hang")
    elapsed = time.monotonic() - started
    assert not result.ok and result.error is not None
    assert result.error.code == "timeout"
    assert result.say == "Billing is slow today."
    assert elapsed < 1.0, f"answered after {elapsed:.2f} s with a 0.5 s budget"


async def test_per_attempt_timeout_then_retry(
    make_runtime: RuntimeFactory, proxy: FaultProxy
) -> None:
    proxy.add(Fault("hang", times=1))
    rt = make_runtime(tight(timeout=0.3, budget=3), fast=False)
    result = await rt.call_tool("get_customer", GET_CUSTOMER, "c-hang1")
    assert result.ok, result.to_dict()
    assert result.meta["attempts"] == 2


async def test_garbage_json_is_a_clean_error(
    make_runtime: RuntimeFactory, proxy: FaultProxy
) -> None:
    proxy.add(Fault("garbage"))
    rt = make_runtime()
    result = await rt.call_tool("get_customer", GET_CUSTOMER, "c-garbage")
    assert not result.ok and result.error is not None
    assert result.error.code == "upstream_unavailable"
    assert "html" not in result.to_json()


async def test_path_injection_stays_inside_the_api(
    make_runtime: RuntimeFactory, proxy: FaultProxy
) -> None:
    rt = make_runtime(tight())  # this tool has no pattern: the builder alone must hold
    for evil in ("../_ledger", "..", "x?admin=1", "https://evil.example/", "a/../../_reset"):
        result = await rt.call_tool("get_customer", {"customer_id": evil}, "c-evil")
        assert not result.ok and result.error is not None
        assert result.error.code in ("not_found", "invalid_arguments"), result.to_dict()
    # The example's own tool rejects such ids before any request.
    rt2 = make_runtime()
    before = proxy.stats().total
    result = await rt2.call_tool("get_customer", {"customer_id": "../_ledger"}, "c-evil2")
    assert result.error is not None and result.error.code == "invalid_arguments"
    assert "customer_id" in result.error.fields
    assert proxy.stats().total == before


async def test_payment_after_a_lost_response_charges_once(
    make_runtime: RuntimeFactory, proxy: FaultProxy, billing: BillingServer
) -> None:
    sink = MemorySink()
    rt = make_runtime(sink=sink)
    call = CallContext(id="c-lost")
    found = await rt.call_tool("lookup_customer_invoices", {"phone": "555-123-4567"}, call)
    assert found.ok, found.to_dict()
    proxy.add(Fault("lose_response", method="POST", times=1))
    paid = await rt.call_tool(
        "create_payment",
        {"invoice_id": "inv_1001", "amount": 24700, "payment_method_id": "pm_card_visa4242"},
        call,
    )
    assert paid.ok, paid.to_dict()
    assert paid.result["success"] is True
    assert paid.result["confirmation_number"].startswith("PAY-")
    assert paid.meta["attempts"] == 2
    assert paid.meta["idempotency_key"] == "call_c-lost_invoice_inv_1001"
    ledger = await billing.ledger()
    assert ledger["charges_by_invoice"] == {"inv_1001": 1}
    posts = [e for e in sink.of_kind("attempt") if e.method == "POST"]
    assert [e.outcome for e in posts] == ["network_error", "ok"]


async def test_post_without_idempotency_key_is_not_resent(
    make_runtime: RuntimeFactory, proxy: FaultProxy, billing: BillingServer
) -> None:
    text = (
        tight()
        + """
  raw_payment:
    integration: billing
    description: Pay without a key.
    parameters:
      invoice_id: {type: string}
    request:
      method: POST
      path: /payments
      body: {invoice_id: "{args.invoice_id}", amount: 1, customer_id: cus_8F2kLq,
             payment_method_id: pm_card_visa4242}
"""
    )
    proxy.add(Fault("status", status=503, method="POST"))
    rt = make_runtime(text)
    result = await rt.call_tool("raw_payment", {"invoice_id": "inv_1001"}, "c-nokey")
    assert not result.ok
    assert proxy.stats().total == 1, "a POST without an idempotency key is sent once"
