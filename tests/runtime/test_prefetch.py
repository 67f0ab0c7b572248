"""Prefetch at call start, and call state shared through the store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from patchbay import CallContext, ToolRuntime
from patchbay._errors import ConfigErrors
from patchbay.observe import MemorySink
from patchbay.spec import load_config, load_config_text
from patchbay.testing import BillingServer, Fault, FaultProxy

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "billing" / "patchbay.yaml"
JAMIE = "+15551234567"
PAY_1001 = {"invoice_id": "inv_1001", "amount": 24700, "payment_method_id": "pm_card_visa4242"}


def _runtime(env: dict[str, str], sink: MemorySink | None = None, state: str = "") -> ToolRuntime:
    if state:
        env = {**env, "PATCHBAY_STATE": state}
    return ToolRuntime(load_config(EXAMPLE, env=env), sinks=[sink] if sink else [])


def _lookups(proxy: FaultProxy) -> int:
    return proxy.stats().by_path.get("GET /customers/search", 0)


async def test_prefetch_answers_the_later_lookup_without_a_request(
    env: dict[str, str], proxy: FaultProxy
) -> None:
    sink = MemorySink()
    async with _runtime(env, sink) as rt:
        # Slow enough that the lookup below has to wait for the prefetch still in flight.
        proxy.add(Fault("slow", path_prefix="/customers/search", delay_s=0.3, times=1))
        started = time.monotonic()
        await rt.start_call(CallContext(id="c-pre", caller=JAMIE))
        assert time.monotonic() - started < 0.1, "start_call does not wait for the prefetch"
        result = await rt.call_tool(
            "lookup_customer_invoices", {"phone": "(555) 123-4567"}, "c-pre"
        )
        assert result.ok, result.to_dict()
        assert result.meta["prefetched"] is True
        assert result.result["customer_name"] == "Jamie Patel"
        assert proxy.stats().total == 2, "search and invoices, once, by the prefetch"
        # The prefetch's handler filled the call state the payment needs.
        paid = await rt.call_tool("create_payment", PAY_1001, "c-pre")
        assert paid.ok, paid.to_dict()
        # Used once: asking again is a fresh lookup.
        again = await rt.call_tool("lookup_customer_invoices", {"phone": JAMIE}, "c-pre")
        assert again.ok and "prefetched" not in again.meta
        assert _lookups(proxy) == 2
    calls = [e for e in sink.of_kind("tool_call") if e.tool == "lookup_customer_invoices"]
    assert [(e.extra.get("via"), e.extra.get("prefetched")) for e in calls] == [
        ("prefetch", None),
        (None, True),
        (None, None),
    ]


async def test_other_arguments_are_not_answered_by_the_prefetch(
    env: dict[str, str], proxy: FaultProxy
) -> None:
    async with _runtime(env) as rt:
        await rt.start_call(CallContext(id="c-other", caller=JAMIE))
        result = await rt.call_tool(
            "lookup_customer_invoices", {"phone": "+15559876543"}, "c-other"
        )
        assert result.ok and "prefetched" not in result.meta
        assert result.result["customer_name"] == "Morgan Lee"
        await rt.drain()
        assert _lookups(proxy) == 2


async def test_no_caller_number_means_no_prefetch(env: dict[str, str], proxy: FaultProxy) -> None:
    async with _runtime(env) as rt:
        await rt.start_call(CallContext(id="c-anon"))
        await rt.start_call(CallContext(id="c-bad", caller="not a number"))
        await asyncio.sleep(0.05)
    assert proxy.stats().total == 0


async def test_a_failed_prefetch_is_asked_again(env: dict[str, str], proxy: FaultProxy) -> None:
    async with _runtime(env) as rt:
        proxy.add(Fault("status", status=503, path_prefix="/customers/search", times=3))
        await rt.start_call(CallContext(id="c-fail", caller=JAMIE))
        result = await rt.call_tool("lookup_customer_invoices", {"phone": JAMIE}, "c-fail")
        assert result.ok and result.result["found"] is True and "prefetched" not in result.meta


async def test_end_call_cancels_the_prefetch_and_releases_state(
    env: dict[str, str], proxy: FaultProxy
) -> None:
    async with _runtime(env) as rt:
        proxy.add(Fault("hang", path_prefix="/customers/search", times=1))
        await rt.start_call(CallContext(id="c-end", caller=JAMIE))
        for _ in range(500):
            if proxy.stats().total:
                break
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await rt.end_call("c-end")
        assert time.monotonic() - started < 0.1
        # The hung prefetch is gone: the same lookup now sends its own requests.
        result = await rt.call_tool("lookup_customer_invoices", {"phone": JAMIE}, "c-end")
        assert result.ok and "prefetched" not in result.meta
        assert await rt.store.get("call:c-end") is not None, "the lookup stored the state"
        await rt.end_call("c-end")
        assert await rt.store.get("call:c-end") is None


async def test_call_state_is_shared_by_replicas(
    env: dict[str, str], proxy: FaultProxy, billing: BillingServer, tmp_path: Path
) -> None:
    state = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    async with _runtime(env, state=state) as one, _runtime(env, state=state) as two:
        found = await one.call_tool("lookup_customer_invoices", {"phone": JAMIE}, "c-rep")
        assert found.ok
        # Another replica takes the payment: it learns customer_id from the shared state.
        paid = await two.call_tool("create_payment", PAY_1001, CallContext(id="c-rep"))
        assert paid.ok, paid.to_dict()
        await two.end_call("c-rep")
        assert await one.store.get("call:c-rep") is None
    assert (await billing.ledger())["charges_by_invoice"] == {"inv_1001": 1}


def test_prefetch_arguments_must_come_from_the_call(env: dict[str, str]) -> None:
    text = """
version: 1
integrations:
  billing: {base_url: "http://127.0.0.1:1"}
tools:
  find:
    integration: billing
    description: Find a customer.
    parameters:
      phone: {type: string}
      name: {type: string}
    request: {method: GET, path: /customers/search, query: {phone: "{args.phone}"}}
    prefetch: {args: {phone: "{args.name}", nick: "{call.caller}", name: "{call.colour}"}}
  write:
    integration: billing
    description: Write.
    request: {method: POST, path: /x}
    prefetch: true
  bare:
    integration: billing
    description: Needs a phone.
    parameters:
      phone: {type: string}
    request: {method: GET, path: /customers/search}
    prefetch: true
"""
    with pytest.raises(ConfigErrors) as info:
        load_config_text(text, env=env)
    found = {(e.location, e.message.split(":")[0]) for e in info.value.errors}
    assert found == {
        (
            "tools.find.prefetch.args.phone",
            "prefetch arguments come from the call, not {args.name}",
        ),
        ("tools.find.prefetch.args.nick", "names unknown parameter 'nick'"),
        (
            "tools.find.prefetch.args.name",
            "unknown placeholder {call.colour}; "
            "use call.id, call.tenant, call.caller or call.state.<name>",
        ),
        ("tools.write.prefetch", "only read tools can be prefetched at call start"),
        ("tools.bare.prefetch", "the tool requires 'phone'"),
    }
