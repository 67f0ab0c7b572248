"""What the caller hears about a write: pending when it may have happened, failed only when not."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import yaml

from patchbay import CallContext, ToolRuntime
from patchbay.observe import MemorySink
from patchbay.testing import BillingServer, Fault, FaultProxy

RuntimeFactory = Callable[..., ToolRuntime]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "billing" / "patchbay.yaml"
PAY_1001 = {"invoice_id": "inv_1001", "amount": 24700, "payment_method_id": "pm_card_visa4242"}
KEY = "call_{}_invoice_inv_1001"
JAMIE = {"phone": "+15551234567"}


def _example_say(tool: str) -> dict[str, str]:
    say: dict[str, str] = yaml.safe_load(EXAMPLE.read_text())["tools"][tool]["say"]
    return say


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: connecting to it is refused


async def _looked_up(rt: ToolRuntime, call_id: str) -> CallContext:
    call = CallContext(id=call_id)
    assert (await rt.call_tool("lookup_customer_invoices", JAMIE, call)).ok
    return call


async def test_a_payment_whose_answers_are_lost_is_pending_then_confirmed_once(
    make_runtime: RuntimeFactory, proxy: FaultProxy, billing: BillingServer
) -> None:
    sink = MemorySink()
    rt = make_runtime(sink=sink)
    call = await _looked_up(rt, "c-lost")
    # Every attempt reaches the API (it charges) and the connection is reset before the answer.
    proxy.add(Fault("lose_response", method="POST", path_prefix="/payments", times=3))
    result = await rt.call_tool("create_payment", PAY_1001, call)

    assert result.error is not None and result.error.code == "pending", result.to_dict()
    assert result.say == _example_say("create_payment")["pending"]
    assert "nothing was charged" not in (result.say or "")
    assert "do not send it again" in result.error.message
    assert not result.error.retryable
    assert (await billing.ledger())["charges_by_invoice"] == {"inv_1001": 1}

    # The confirmation resends with the same key: the API answers the payment it made.
    await rt.drain()
    ledger = await billing.ledger()
    assert ledger["charges_by_invoice"] == {"inv_1001": 1}
    recorded = await rt.background_outcome("c-lost", KEY.format("c-lost"))
    assert recorded is not None and recorded["ok"] is True and recorded["status"] == 201
    confirmation = ledger["payments"][0]["confirmation_number"]
    assert recorded["result"]["confirmation_number"] == confirmation
    [event] = sink.of_kind("background")
    assert (event.call_id, event.outcome) == ("c-lost", "ok")
    assert event.extra["source"] == "reconciled"
    assert proxy.stats().by_path["POST /payments"] == 4


async def test_a_pending_write_without_a_key_is_never_sent_again(
    make_runtime: RuntimeFactory, proxy: FaultProxy, billing: BillingServer
) -> None:
    text = EXAMPLE.read_text().replace(
        '    idempotency: {key: "call_{call.id}_invoice_{args.invoice_id}"}\n', ""
    )
    sink = MemorySink()
    rt = make_runtime(text, sink=sink)
    call = await _looked_up(rt, "c-nokey")
    proxy.add(Fault("lose_response", method="POST"))
    result = await rt.call_tool("create_payment", PAY_1001, call)
    await rt.drain()
    assert result.error is not None and result.error.code == "pending"
    assert result.say == _example_say("create_payment")["pending"]
    assert proxy.stats().by_path["POST /payments"] == 1
    assert [e.outcome for e in sink.of_kind("background")] == ["unresolved"]


async def test_a_refused_connection_changed_nothing_and_says_so(
    make_runtime: RuntimeFactory, env: dict[str, str]
) -> None:
    text = EXAMPLE.read_text().replace(
        "${BILLING_URL:-http://127.0.0.1:8042}", f"http://127.0.0.1:{_closed_port()}"
    )
    rt = make_runtime(text)
    state = {"customer_id": "cus_8F2kLq", "open_invoice_amount": 24700}
    call = CallContext(id="c-down", state=state)
    result = await rt.call_tool("create_payment", PAY_1001, call)
    assert result.error is not None and result.error.code == "upstream_unavailable"
    assert result.say == _example_say("create_payment")["failed"]
    await rt.drain()
    assert await rt.background_outcome("c-down", KEY.format("c-down")) is None


async def test_a_server_error_after_the_retries_is_pending_not_failed(
    make_runtime: RuntimeFactory, proxy: FaultProxy, billing: BillingServer
) -> None:
    rt = make_runtime()
    call = await _looked_up(rt, "c-5xx")
    proxy.add(Fault("status", status=502, method="POST", times=3))
    result = await rt.call_tool("create_payment", PAY_1001, call)
    assert result.error is not None and result.error.code == "pending"
    await rt.drain()
    recorded = await rt.background_outcome("c-5xx", KEY.format("c-5xx"))
    assert recorded is not None and recorded["outcome"] == "ok"
    assert (await billing.ledger())["charges_by_invoice"] == {"inv_1001": 1}


async def test_every_attempt_timing_out_is_a_timeout(
    make_runtime: RuntimeFactory, proxy: FaultProxy
) -> None:
    text = EXAMPLE.read_text().replace("    timeout_s: 2\n", "    timeout_s: 0.2\n", 1)
    rt = make_runtime(text)
    proxy.add(Fault("hang", path_prefix="/customers/"))
    result = await rt.call_tool("lookup_customer_invoices", JAMIE, "c-slow")
    assert proxy.stats().total == 3, "three attempts, each timed out within the budget"
    assert result.error is not None and result.error.code == "timeout", result.to_dict()
    assert result.error.retryable


async def test_an_unknown_customer_is_not_an_outage(make_runtime: RuntimeFactory) -> None:
    failed = '    say: {failed: "I can\'t reach billing right now."}\n'
    text = EXAMPLE.read_text().replace(
        "    budget_s: 3\n  lookup_customer_invoices:",
        "    budget_s: 3\n" + failed + "  lookup_customer_invoices:",
        1,
    )
    assert failed in text
    rt = make_runtime(text)
    result = await rt.call_tool("get_customer", {"customer_id": "cus_nobody"}, "c-nf")
    assert result.error is not None and result.error.code == "not_found"
    assert result.error.message == "customer not found"
    assert result.say is None, "the outage line is not for an unknown customer"

    worded = make_runtime(
        text.replace('failed: "', 'not_found: "I can\'t find that account.", failed: "', 1)
    )
    again = await worded.call_tool("get_customer", {"customer_id": "cus_nobody"}, "c-2")
    assert again.say == "I can't find that account."


async def test_asking_again_while_a_write_is_confirmed_adds_no_second_confirmation(
    make_runtime: RuntimeFactory, proxy: FaultProxy, billing: BillingServer
) -> None:
    sink = MemorySink()
    rt = make_runtime(sink=sink)
    call = await _looked_up(rt, "c-twice")
    proxy.add(Fault("lose_response", method="POST", path_prefix="/payments", times=6))
    first = await rt.call_tool("create_payment", PAY_1001, call)
    second = await rt.call_tool("create_payment", PAY_1001, call)
    assert first.error is not None and first.error.code == "pending"
    assert second.error is not None and second.error.code == "pending"
    await rt.drain()
    assert [e.outcome for e in sink.of_kind("background")] == ["ok"]
    assert (await billing.ledger())["charges_by_invoice"] == {"inv_1001": 1}


async def test_a_payment_answered_with_garbage_is_pending_not_failed(
    make_runtime: RuntimeFactory, proxy: FaultProxy, billing: BillingServer
) -> None:
    rt = make_runtime()
    call = await _looked_up(rt, "c-garbage")
    # A 200 that is not JSON may come from something that never forwarded the payment.
    proxy.add(Fault("garbage", method="POST", times=1))
    result = await rt.call_tool("create_payment", PAY_1001, call)
    assert result.error is not None and result.error.code == "pending"
    assert result.say == _example_say("create_payment")["pending"]
    await rt.drain()
    recorded = await rt.background_outcome("c-garbage", KEY.format("c-garbage"))
    assert recorded is not None and recorded["outcome"] == "ok"
    assert (await billing.ledger())["charges_by_invoice"] == {"inv_1001": 1}
