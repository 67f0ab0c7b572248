"""Response contracts: answers checked against `response.expect` and `root` on every call."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from patchbay import ToolRuntime
from patchbay._errors import ConfigError
from patchbay.docs import render_markdown
from patchbay.observe import MemorySink, PrometheusSink
from patchbay.runtime._handler import HandlerContext
from patchbay.spec import Config, load_config_text
from patchbay.spec._returns import returns_schema

CUSTOMER = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "object",
            "required": ["customer"],
            "properties": {"customer": {"$ref": "#/$defs/customer"}},
        }
    },
    "$defs": {
        "customer": {
            "type": "object",
            "required": ["id", "name", "tier"],
            "properties": {
                "id": {"type": "string"},
                "name": {"type": "string"},
                "tier": {"type": "string"},
                "phone": {"type": "string"},
            },
        }
    },
}

CONFIG = """
version: 1
integrations:
  api:
    base_url: ${API_URL}
tools:
  get_customer:
    integration: api
    description: Read a customer.
    parameters:
      customer_id: {type: string}
    request: {method: GET, path: "/customers/{customer_id}"}
    response:
      root: data.customer
      fields: {customer_name: name, account_tier: tier}
      expect: EXPECT
      ENFORCE
  loose:
    integration: api
    description: Read a customer, with a root but no contract.
    parameters:
      customer_id: {type: string}
    request: {method: GET, path: "/customers/{customer_id}"}
    response: {root: data.customer}
  pay:
    integration: api
    description: Pay.
    parameters:
      invoice_id: {type: string}
    request: {method: POST, path: "/payments", body: {invoice_id: "{args.invoice_id}"}}
    idempotency: {key: "pay_{call.id}_{args.invoice_id}"}
    say: {pending: "Your payment was received; I will confirm the details.", failed: "Failed."}
    response:
      expect:
        type: object
        required: [confirmation_number]
        properties: {confirmation_number: {type: string}}
      ENFORCE
"""


class Upstream:
    """An API on loopback whose answers the test shapes; counts payments received."""

    def __init__(self) -> None:
        self.customer: Any = {"id": "cus_1", "name": "Jamie Patel", "tier": "premium"}
        self.payment: Any = {"confirmation_number": "PAY-1"}
        self.payments = 0
        self.url = ""

    async def get_customer(self, request: web.Request) -> web.Response:
        return web.json_response({"status": 200, "data": {"customer": self.customer}})

    async def pay(self, request: web.Request) -> web.Response:
        self.payments += 1
        return web.json_response(self.payment, status=201)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    api = Upstream()
    app = web.Application()
    app.router.add_get("/customers/{customer_id}", api.get_customer)
    app.router.add_post("/payments", api.pay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    api.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield api
    finally:
        await runner.cleanup()


def config(api: Upstream, *, enforce: bool = False) -> Config:
    text = CONFIG.replace("EXPECT", json.dumps(CUSTOMER)).replace(
        "ENFORCE", "enforce: true" if enforce else ""
    )
    return load_config_text(text, base_dir=Path(__file__).parent, env={"API_URL": api.url})


async def test_a_matching_answer_passes_without_a_contract_event(upstream: Upstream) -> None:
    sink = MemorySink()
    async with ToolRuntime(config(upstream), sinks=[sink]) as rt:
        result = await rt.call_tool("get_customer", {"customer_id": "cus_1"}, "c1")
    assert result.ok
    assert result.result == {"customer_name": "Jamie Patel", "account_tier": "premium"}
    assert sink.of_kind("contract") == []


async def test_a_mismatch_is_an_event_and_a_metric_without_values(upstream: Upstream) -> None:
    upstream.customer = {"id": "cus_1", "name": "Jamie Patel", "tier": 3, "phone": "+15551234567"}
    sink, metrics = MemorySink(), PrometheusSink()
    async with ToolRuntime(config(upstream), sinks=[sink, metrics]) as rt:
        result = await rt.call_tool("get_customer", {"customer_id": "cus_1"}, "c1")
        upstream.customer = {"id": "cus_1", "tier": "basic", "phone": "+15551234567"}
        missing = await rt.call_tool("get_customer", {"customer_id": "cus_1"}, "c1")
    # Without enforce the answer still reaches the LLM: the contract only reports.
    assert result.ok and result.result["account_tier"] == 3
    assert missing.ok
    events = sink.of_kind("contract")
    assert [e.extra["reason"] for e in events] == [
        "$.data.customer.tier: expected string, got integer",
        "$.data.customer: missing required name",
    ]
    assert all(e.tool == "get_customer" and e.integration == "api" for e in events)
    assert all(e.path == "/customers/{customer_id}" for e in events)
    text = json.dumps([e.extra for e in events])
    assert "Jamie" not in text and "+1555" not in text and "basic" not in text
    exposition = metrics.exposition().decode()
    line = 'patchbay_contract_mismatches_total{integration="api",tool="get_customer",version=""}'
    assert f"{line} 2.0" in exposition


async def test_keys_the_schema_does_not_name_are_not_shown(upstream: Upstream) -> None:
    sink = MemorySink()
    text = CONFIG.replace("EXPECT", json.dumps(CUSTOMER)).replace("ENFORCE", "")
    schema = {"type": "object", "additionalProperties": {"type": "integer"}}
    text = text.replace(
        "response: {root: data.customer}", f"response: {{expect: {json.dumps(schema)}}}"
    )
    cfg = load_config_text(text, base_dir=Path(__file__).parent, env={"API_URL": upstream.url})
    upstream.customer = {"jamie.patel@example.com": "x"}
    async with ToolRuntime(cfg, sinks=[sink]) as rt:
        await rt.call_tool("loose", {"customer_id": "cus_1"}, "c1")
    (event,) = sink.of_kind("contract")
    assert event.extra["reason"].startswith("$.*")
    assert "jamie" not in json.dumps(event.extra)


async def test_enforced_mismatch_on_a_read_is_a_clean_error(upstream: Upstream) -> None:
    upstream.customer = {"id": "cus_1", "name": "Jamie Patel"}
    sink = MemorySink()
    async with ToolRuntime(config(upstream, enforce=True), sinks=[sink]) as rt:
        result = await rt.call_tool("get_customer", {"customer_id": "cus_1"}, "c1")
    assert not result.ok and result.error is not None
    assert result.error.code == "upstream_unavailable"
    assert not result.error.retryable, "the same answer would come again"
    assert "Jamie" not in result.llm_text()
    (event,) = sink.of_kind("contract")
    assert event.extra["enforced"] is True


async def test_an_enforced_write_answered_2xx_is_pending_never_failed(
    upstream: Upstream,
) -> None:
    upstream.payment = {"status": "completed"}  # no confirmation number
    sink = MemorySink()
    async with ToolRuntime(config(upstream, enforce=True), sinks=[sink]) as rt:
        result = await rt.call_tool("pay", {"invoice_id": "inv_1"}, "c1")
        await rt.drain(5)
    assert not result.ok and result.error is not None
    assert result.error.code == "pending" and not result.error.retryable
    assert "do not send it again" in result.error.message
    assert result.say == "Your payment was received; I will confirm the details."
    # A 2xx is definitive: nothing resends the write to confirm it.
    assert upstream.payments == 1
    assert len(sink.of_kind("contract")) == 1


async def test_a_root_that_selects_nothing_is_a_mismatch_without_expect(
    upstream: Upstream,
) -> None:
    upstream.customer = None
    sink = MemorySink()
    async with ToolRuntime(config(upstream), sinks=[sink]) as rt:
        result = await rt.call_tool("loose", {"customer_id": "cus_1"}, "c1")
    assert result.ok and result.result is None
    (event,) = sink.of_kind("contract")
    assert event.extra["reason"] == "root data.customer selects nothing"


async def test_a_tool_without_contract_or_root_emits_nothing(upstream: Upstream) -> None:
    text = CONFIG.replace("EXPECT", json.dumps(CUSTOMER)).replace("ENFORCE", "")
    text = text.replace("response: {root: data.customer}", "response: {}")
    cfg = load_config_text(text, base_dir=Path(__file__).parent, env={"API_URL": upstream.url})
    upstream.customer = None
    sink = MemorySink()
    async with ToolRuntime(cfg, sinks=[sink]) as rt:
        result = await rt.call_tool("loose", {"customer_id": "cus_1"}, "c1")
    assert result.ok and result.result == {"status": 200, "data": {"customer": None}}
    assert sink.of_kind("contract") == []


def test_an_invalid_schema_is_a_config_error_naming_where(upstream: Upstream) -> None:
    text = CONFIG.replace("EXPECT", '{"type": "objekt"}').replace("ENFORCE", "")
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, base_dir=Path(__file__).parent, env={"API_URL": upstream.url})
    assert "get_customer" in str(caught.value) and "not a valid JSON Schema" in str(caught.value)


def test_returns_is_derived_through_root_and_fields_and_shown_in_docs(
    upstream: Upstream,
) -> None:
    cfg = config(upstream)
    derived = returns_schema(cfg.tools["get_customer"])
    assert derived == {
        "type": "object",
        "properties": {"customer_name": {"type": "string"}, "account_tier": {"type": "string"}},
        "required": ["customer_name", "account_tier"],
    }
    assert returns_schema(cfg.tools["loose"]) is None, "no contract: nothing to derive"
    page = "\n".join(text for _, text in render_markdown(cfg).items())
    assert "What the LLM receives (JSON Schema)" in page
    assert '"customer_name": {' in page


def test_a_written_returns_wins_over_the_derived_one(upstream: Upstream) -> None:
    text = CONFIG.replace("EXPECT", json.dumps(CUSTOMER)).replace("ENFORCE", "")
    given = {"type": "object", "properties": {"customer_name": {"type": "string"}}}
    text = text.replace(
        "    response: {root: data.customer}",
        f"    returns: {json.dumps(given)}\n    response: {{}}",
    )
    cfg = load_config_text(text, base_dir=Path(__file__).parent, env={"API_URL": upstream.url})
    assert returns_schema(cfg.tools["loose"]) == given


async def shaped_handler(ctx: HandlerContext, customer_id: str) -> Any:
    """A handler whose answer the contract checks as it checks an API's."""
    return {"customer_name": 7} if customer_id == "bad" else {"customer_name": "Jamie"}


async def test_a_handlers_value_is_checked_like_an_answer(upstream: Upstream) -> None:
    text = CONFIG.replace("EXPECT", json.dumps(CUSTOMER)).replace("ENFORCE", "")
    expect = {"type": "object", "required": ["customer_name"],
              "properties": {"customer_name": {"type": "string"}}}  # fmt: skip
    text = text.replace(
        '    request: {method: GET, path: "/customers/{customer_id}"}\n'
        "    response: {root: data.customer}",
        "    handler: test_contracts:shaped_handler\n    write: false\n"
        f"    response: {{expect: {json.dumps(expect)}, enforce: true}}",
    )
    cfg = load_config_text(text, base_dir=Path(__file__).parent, env={"API_URL": upstream.url})
    assert cfg.tools["loose"].handler is not None
    sink = MemorySink()
    async with ToolRuntime(cfg, sinks=[sink]) as rt:
        good = await rt.call_tool("loose", {"customer_id": "good"}, "c1")
        bad = await rt.call_tool("loose", {"customer_id": "bad"}, "c1")
    assert good.ok and good.result == {"customer_name": "Jamie"}
    assert not bad.ok and bad.error is not None and bad.error.code == "upstream_unavailable"
    (event,) = sink.of_kind("contract")
    assert event.extra["reason"] == "$.customer_name: expected string, got integer"
