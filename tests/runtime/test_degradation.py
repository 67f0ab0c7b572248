"""Budgets and graceful degradation: timeouts with words, writes finished, callbacks taken."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from patchbay import CallContext, ToolRuntime
from patchbay._errors import ConfigErrors
from patchbay.http import Response
from patchbay.observe import MemorySink
from patchbay.runtime._outcomes import describe_response
from patchbay.spec import load_config_text
from patchbay.testing import BillingServer, Fault, FaultProxy

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "billing"
JAMIE_PHONE = {"phone": "555-123-4567"}
PAY_1001 = {"invoice_id": "inv_1001", "amount": 24700, "payment_method_id": "pm_card_visa4242"}
STILL = "The payment is still processing; I'll confirm it shortly."

CONFIG = """
version: 1
integrations:
  billing:
    base_url: ${BILLING_URL}
    auth: {type: api_key, header: X-API-Key, secret: env:BILLING_API_KEY}
    timeout_s: 2
    retry: {attempts: 3, backoff_s: 0.05, max_backoff_s: 0.2}
    operations:
      - {method: GET, path: /customers/search}
      - {method: GET, path: /invoices}
tools:
  lookup_customer_invoices:
    integration: billing
    description: Look up open invoices by phone.
    parameters:
      phone: {type: string, format: e164}
    handler: billing_tools:lookup_customer_invoices
  create_payment:
    integration: billing
    description: Pay an invoice.
    parameters:
      invoice_id: {type: string}
      amount: {type: integer, minimum: 1}
      payment_method_id: {type: string}
    request:
      method: POST
      path: /payments
      body: {customer_id: "{call.state.customer_id}", invoice_id: "{args.invoice_id}",
             amount: "{args.amount}", payment_method_id: "{args.payment_method_id}"}
    idempotency: {key: "call_{call.id}_invoice_{args.invoice_id}"}
    response:
      fields: {confirmation_number: confirmation_number, amount: amount}
    say: {failed: "Nothing was charged.", timeout: "STILL"}
    budget_s: 0.5
  unkeyed_payment:
    integration: billing
    description: Pay without an idempotency key.
    parameters:
      invoice_id: {type: string}
    request:
      method: POST
      path: /payments
      body: {customer_id: cus_8F2kLq, invoice_id: "{args.invoice_id}", amount: 100,
             payment_method_id: pm_card_visa4242}
    budget_s: 0.5
  take_callback_request:
    builtin: callback_request
    description: When billing cannot be reached, take the caller's details for a call back.
    parameters:
      name: {type: string, min_length: 1}
      phone: {type: string, format: e164}
      reason: {type: string, max_length: 500}
""".replace("STILL", STILL)


def _runtime(env: dict[str, str], sink: MemorySink, state: str = "memory") -> ToolRuntime:
    text = CONFIG.replace("version: 1\n", f"version: 1\nstate: {state}\n", 1)
    return ToolRuntime(load_config_text(text, base_dir=EXAMPLE_DIR, env=env), sinks=[sink])


def _adopted(sink: MemorySink) -> list[dict[str, object]]:
    return [
        {"tool": e.tool, "outcome": e.outcome, **e.extra}
        for e in sink.of_kind("background")
        if e.extra.get("source") == "adopted"
    ]


async def test_budget_ends_on_a_slow_payment_which_still_completes_once(
    env: dict[str, str], proxy: FaultProxy, billing: BillingServer
) -> None:
    sink = MemorySink()
    async with _runtime(env, sink) as rt:
        call = CallContext(id="c-slow")
        assert (await rt.call_tool("lookup_customer_invoices", JAMIE_PHONE, call)).ok
        proxy.add(Fault("slow", method="POST", delay_s=1.0, times=1))
        started = time.monotonic()
        result = await rt.call_tool("create_payment", PAY_1001, call)
        elapsed = time.monotonic() - started
        assert not result.ok and result.error is not None
        assert result.error.code == "pending"  # sent, outcome not known yet: never "failed"
        assert result.say == STILL
        assert "do not send it again" in result.error.message
        assert result.meta.get("finishing_in_background") is True
        assert elapsed < 0.5 + 0.1, f"answered after {elapsed:.3f} s with a 0.5 s budget"

        await rt.drain()
        ledger = await billing.ledger()
        assert ledger["charges_by_invoice"] == {"inv_1001": 1}
        key = "call_c-slow_invoice_inv_1001"
        assert [(e["tool"], e["outcome"], e["key"]) for e in _adopted(sink)] == [
            ("create_payment", "ok", key)
        ]
        recorded = await rt.background_outcome("c-slow", key)
        assert recorded is not None and recorded["ok"] is True and recorded["status"] == 201
        confirmation = recorded["result"]["confirmation_number"]
        assert confirmation == ledger["payments"][0]["confirmation_number"]

        # Asking again: the idempotency ledger answers with the same payment, no request.
        posts = proxy.stats().by_path.get("POST /payments", 0)
        again = await rt.call_tool("create_payment", PAY_1001, call)
        assert again.ok, again.to_dict()
        assert again.result == {"confirmation_number": confirmation, "amount": 24700}
        assert again.meta.get("deduplicated") is True
        assert proxy.stats().by_path.get("POST /payments", 0) == posts
    assert (await billing.ledger())["charges_by_invoice"] == {"inv_1001": 1}


async def test_asking_again_while_the_write_finishes_charges_once(
    env: dict[str, str], proxy: FaultProxy, billing: BillingServer
) -> None:
    sink = MemorySink()
    async with _runtime(env, sink) as rt:
        call = CallContext(id="c-again")
        assert (await rt.call_tool("lookup_customer_invoices", JAMIE_PHONE, call)).ok
        # Every POST is slow: the background finish and the second ask overlap.
        proxy.add(Fault("slow", method="POST", delay_s=0.8))
        first = await rt.call_tool("create_payment", PAY_1001, call)
        second = await rt.call_tool("create_payment", PAY_1001, call)
        assert first.error is not None and first.error.code == "pending"
        assert second.error is not None and second.error.code == "pending"
        assert second.say == STILL
        await rt.drain()
    assert (await billing.ledger())["charges_by_invoice"] == {"inv_1001": 1}


async def test_a_write_without_key_is_recorded_as_unresolved(
    env: dict[str, str], proxy: FaultProxy, billing: BillingServer
) -> None:
    sink = MemorySink()
    async with _runtime(env, sink) as rt:
        proxy.add(Fault("hang", method="POST"))
        result = await rt.call_tool("unkeyed_payment", {"invoice_id": "inv_1001"}, "c-nokey")
        assert result.error is not None and result.error.code == "pending"
        await rt.drain()
        assert [e["outcome"] for e in _adopted(sink)] == ["unresolved"]
    assert proxy.stats().total == 1, "a write without a key is never sent twice"


async def test_read_that_runs_out_of_budget_is_not_finished(
    env: dict[str, str], proxy: FaultProxy
) -> None:
    sink = MemorySink()
    async with _runtime(env, sink) as rt:
        proxy.add(Fault("hang"))
        result = await rt.call_tool("lookup_customer_invoices", JAMIE_PHONE, "c-read")
        assert result.error is not None and result.error.code == "timeout"
        await rt.drain()
    assert sink.of_kind("background") == []


async def test_callback_request_is_taken_while_the_api_is_down(
    env: dict[str, str], proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.add(Fault("status", status=503))
    state = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    sink = MemorySink()
    async with _runtime(env, sink, state) as rt:
        down = await rt.call_tool("lookup_customer_invoices", JAMIE_PHONE, "c-cb")
        assert down.error is not None and down.error.code == "upstream_unavailable"
        seen = proxy.stats().total
        call = CallContext(id="c-cb", caller="+15551234567")
        taken = await rt.call_tool(
            "take_callback_request",
            {"name": "Jamie Patel", "phone": "(555) 123-4567", "reason": "pay my bill"},
            call,
        )
        assert taken.ok, taken.to_dict()
        assert taken.result["status"] == "recorded"
        assert taken.say == "I've taken your details; someone will call you back."
        assert proxy.stats().total == seen, "a callback request sends nothing upstream"
        bad = await rt.call_tool("take_callback_request", {"name": "J", "phone": "12"}, call)
        assert bad.error is not None and bad.error.code == "invalid_arguments"
    # Durable: another runtime on the same store lists it.
    async with _runtime(env, MemorySink(), state) as again:
        found = await again.callback_requests()
    assert len(found) == 1
    assert found[0]["reference"] == taken.result["reference"]
    assert found[0]["request"] == {
        "name": "Jamie Patel",
        "phone": "+15551234567",
        "reason": "pay my bill",
    }
    assert found[0]["call_id"] == "c-cb" and found[0]["caller"] == "+15551234567"


def test_builtin_tools_in_the_config(env: dict[str, str]) -> None:
    head = "version: 1\nintegrations:\n  billing: {base_url: 'http://127.0.0.1:1'}\ntools:\n"
    ok = load_config_text(
        head + "  cb: {builtin: callback_request, description: Take details.}\n", env=env
    )
    assert ok.tools["cb"].integration == "" and ok.tools["cb"].is_write
    cases = {
        "  cb: {builtin: callback_request, description: d, request: {path: /x}}\n": (
            "tools.cb",
            "a builtin tool takes no request or handler",
        ),
        "  cb: {builtin: callback_request, description: d, mode: background}\n": (
            "tools.cb.mode",
            "a builtin tool answers at once",
        ),
        "  cb: {builtin: callback_request, description: d, integration: crm}\n": (
            "tools.cb.integration",
            "unknown integration 'crm' (integrations: billing)",
        ),
        "  t: {description: d, request: {path: /x}}\n": (
            "tools.t",
            "missing required key 'integration'",
        ),
    }
    for tool, expected in cases.items():
        with pytest.raises(ConfigErrors) as info:
            load_config_text(head + tool, env=env)
        assert [(e.location, e.message) for e in info.value.errors] == [expected]


def test_what_a_finished_write_answered(env: dict[str, str]) -> None:
    config = load_config_text(CONFIG, base_dir=EXAMPLE_DIR, env=env)
    pay = config.tools["create_payment"]
    body = b'{"status":"completed","confirmation_number":"PAY-1","amount":5,"invoice_id":"i"}'
    assert describe_response(Response(201, {}, body), pay) == (
        "ok",
        {"confirmation_number": "PAY-1", "amount": 5},
    )
    # A 2xx that is not JSON may come from a proxy that never forwarded: nobody knows.
    assert describe_response(Response(200, {}, b"<html>oops"), pay) == ("unresolved", None)
    assert describe_response(Response(404, {}, b"{}"), pay) == ("not_found", None)
    assert describe_response(Response(503, {}, b""), pay) == ("upstream_unavailable", None)
