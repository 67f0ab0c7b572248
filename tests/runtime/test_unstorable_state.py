"""Call state the store cannot keep (broken text, deep nesting, endless numbers, odd keys).

Whatever an embedding agent puts in a `CallContext`, a tool call answers with a well-formed
result: the state that cannot be written stays with the live call, and one warning says so
without quoting it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from patchbay import CallContext, ToolRuntime
from patchbay.runtime import ToolCall
from patchbay.spec import load_config

RuntimeFactory = Callable[..., ToolRuntime]  # the make_runtime fixture of conftest.py
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "billing" / "patchbay.yaml"

JAMIE = "+15551234567"


def _deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


UNSTORABLE: dict[str, dict[Any, Any]] = {
    "lone_surrogate_key": {"\ud800": {}},
    "lone_surrogate_value": {"note": "ab\udfffcd"},
    "deep_object": {"customer_id": _deep(1000)},
    "huge_integer": {"open_invoice_amount": {"n": 10**5000}},
    "key_not_text": {1: "one"},
}


def _well_formed(result: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(result.to_dict()))
    assert set(data) >= {"ok", "tool", "call_id", "result", "error"}
    return data


@pytest.mark.parametrize("label", sorted(UNSTORABLE))
async def test_a_handler_tool_answers_whatever_the_call_state_holds(
    make_runtime: RuntimeFactory, label: str
) -> None:
    rt: ToolRuntime = make_runtime()
    ctx = CallContext(id=f"s-{label}", state=dict(UNSTORABLE[label]))
    result = await rt.call_tool("lookup_customer_invoices", {"phone": JAMIE}, ctx)
    data = _well_formed(result)
    assert data["ok"] is True, data
    assert data["result"]["customer_name"] == "Jamie Patel"


@pytest.mark.parametrize("label", sorted(UNSTORABLE))
async def test_execute_and_a_request_tool_answer_too(
    make_runtime: RuntimeFactory, label: str
) -> None:
    rt: ToolRuntime = make_runtime()
    ctx = CallContext(id=f"x-{label}", state=dict(UNSTORABLE[label]))
    looked = await rt.execute(ToolCall("lookup_customer_invoices", {"phone": JAMIE}, ctx))
    assert looked.ok, looked
    # The lookup's facts stay with the live call even though the store could not take them.
    got = await rt.execute(ToolCall("get_customer", {"customer_id": "cus_8F2kLq"}, ctx))
    assert _well_formed(got)["ok"] is True


async def test_a_prefetch_at_call_start_survives_unstorable_state(
    make_runtime: RuntimeFactory,
) -> None:
    rt: ToolRuntime = make_runtime()
    ctx = CallContext(id="s-pre", caller=JAMIE, state={"k": "\udfff"})
    await rt.start_call(ctx)
    result = await rt.call_tool("lookup_customer_invoices", {"phone": JAMIE}, ctx)
    assert _well_formed(result)["ok"] is True


async def test_the_call_can_still_pay_after_its_state_could_not_be_stored(
    make_runtime: RuntimeFactory,
) -> None:
    rt: ToolRuntime = make_runtime()
    ctx = CallContext(id="s-pay", state={"note": "\ud800"})
    looked = await rt.call_tool("lookup_customer_invoices", {"phone": JAMIE}, ctx)
    assert looked.ok, looked
    invoice = looked.result["invoices"][0]
    paid = await rt.call_tool(
        "create_payment",
        {
            "invoice_id": invoice["invoice_id"],
            "amount": invoice["amount"],
            "payment_method_id": "pm_card_visa4242",
        },
        ctx,
    )
    assert _well_formed(paid)["ok"] is True, paid
    assert paid.result["success"] is True


async def test_one_warning_per_call_and_it_does_not_quote_the_state(
    make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    rt: ToolRuntime = make_runtime()
    secret = "4111111111111111\udfff"
    ctx = CallContext(id="s-warn", state={"card": secret})
    with caplog.at_level(logging.WARNING, logger="patchbay"):
        for _ in range(3):
            result = await rt.call_tool("lookup_customer_invoices", {"phone": JAMIE}, ctx)
            assert result.ok, result
    warnings = [r for r in caplog.records if "s-warn" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert "4111" not in caplog.text and "card" not in warnings[0].getMessage()


PREFETCH_FROM_STATE = """
version: 1
integrations:
  billing:
    base_url: ${BILLING_URL}
    auth: {type: api_key, header: X-API-Key, secret: env:BILLING_API_KEY}
tools:
  get_customer:
    integration: billing
    description: Fetch a customer by id.
    parameters:
      customer_id: {type: string}
    request: {method: GET, path: "/customers/{customer_id}"}
    response: {root: data.customer, fields: {customer_name: name}}
    prefetch: {args: {customer_id: "{call.state.customer_id}"}}
"""


async def test_call_start_prefetches_from_state_json_cannot_carry(
    make_runtime: RuntimeFactory,
) -> None:
    rt: ToolRuntime = make_runtime(PREFETCH_FROM_STATE)
    ctx = CallContext(id="s-pre-state", state={"customer_id": "cus_\udfff"})
    await rt.start_call(ctx)
    result = await rt.call_tool("get_customer", {"customer_id": "cus_\udfff"}, ctx)
    assert _well_formed(result)["tool"] == "get_customer"
    fine = await rt.call_tool("get_customer", {"customer_id": "cus_8F2kLq"}, ctx)
    assert fine.ok and fine.result == {"customer_name": "Jamie Patel"}, fine


async def test_a_call_id_no_store_can_key_still_gets_results(
    env: dict[str, str], tmp_path: Path
) -> None:
    config = load_config(EXAMPLE, env={**env, "PATCHBAY_STATE": f"sqlite:///{tmp_path}/s.db"})
    async with ToolRuntime(config) as rt:
        ctx = CallContext(id="c-\udfff", state={"note": "fine"})
        looked = await rt.call_tool("lookup_customer_invoices", {"phone": JAMIE}, ctx)
        assert _well_formed(looked)["ok"] is True, looked
        await rt.end_call(ctx)
