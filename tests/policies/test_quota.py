"""Quotas: per call (a looping LLM is stopped, in words) and per day (per tenant, rolling over)."""

from __future__ import annotations

from patchbay import CallContext
from patchbay._errors import QuotaExceeded
from patchbay.observe import MemorySink
from patchbay.policies._quota import QuotaPolicy
from patchbay.state import MemoryStore

from .support import (
    Clock,
    FakeTransport,
    exchange_for,
    make_config,
    make_runtime,
    pipeline,
    request_for,
)

PAY = {"invoice_id": "inv_1", "amount": 100}


async def test_a_looping_llm_is_stopped_with_words_it_can_act_on() -> None:
    transport, sink = FakeTransport(), MemorySink()
    config = make_config(tools={"pay": {"quota": {"per_call": 3}}})
    async with make_runtime(config, transport, sink=sink) as rt:
        results = [
            await rt.call_tool("pay", {**PAY, "invoice_id": f"inv_{i}"}, "c-loop") for i in range(5)
        ]
        other_call = await rt.call_tool("pay", PAY, "c-other")
    assert [r.ok for r in results] == [True, True, True, False, False]
    stopped = results[3]
    assert stopped.error is not None and stopped.error.code == "quota_exceeded"
    assert stopped.error.message == (
        "pay was already called 3 times in this call; stop calling it and tell the caller "
        "what happened."
    )
    assert not stopped.error.retryable
    assert stopped.meta["tool_calls_this_call"] == 4
    assert len(transport.sent) == 4, "three in the looping call, one in the other"
    assert other_call.ok
    events = [e for e in sink.of_kind("policy") if e.outcome == "quota_exceeded"]
    assert len(events) == 2 and events[0].extra["quota"] == "per_call"


async def test_an_integration_per_call_quota_covers_all_its_tools() -> None:
    transport = FakeTransport()
    config = make_config({"quota": {"per_call": 2}})
    async with make_runtime(config, transport) as rt:
        first = await rt.call_tool("get_item", {"item_id": "a"}, "c-1")
        second = await rt.call_tool("pay", PAY, "c-1")
        third = await rt.call_tool("get_item", {"item_id": "b"}, "c-1")
    assert first.ok and second.ok
    assert third.error is not None and third.error.code == "quota_exceeded"
    assert "api was already used 2 times in this call" in third.error.message


async def test_daily_quota_per_tenant_rolls_over_at_midnight_utc() -> None:
    clock = Clock(1_700_000_000.0 - 1_700_000_000.0 % 86400 + 86400 - 5)  # 23:59:55 UTC
    store = MemoryStore()
    config = make_config({"quota": {"per_day": 2}, "tenants": {"acme": {}, "globex": {}}})
    transport = FakeTransport()
    send = pipeline([QuotaPolicy(store, clock=clock)], transport)

    async def call(tenant: str | None) -> bool:
        exchange = exchange_for(config, "get_item", tenant=tenant)
        try:
            await send(request_for(exchange, item_id="x"), exchange)
        except QuotaExceeded as exc:
            assert "Today's limit of 2 requests to api is used up" in exc.message
            return False
        return True

    assert [await call("acme") for _ in range(3)] == [True, True, False]
    assert await call("globex"), "another tenant has its own count"
    assert await call(None)
    clock.advance(10)  # past midnight UTC
    assert await call("acme")
    assert len(transport.sent) == 5


async def test_a_tools_daily_quota() -> None:
    transport = FakeTransport()
    config = make_config(tools={"get_item": {"quota": {"per_day": 1}}})
    async with make_runtime(config, transport) as rt:
        first = await rt.call_tool("get_item", {"item_id": "a"}, CallContext(id="c-1"))
        second = await rt.call_tool("get_item", {"item_id": "b"}, CallContext(id="c-2"))
        paid = await rt.call_tool("pay", PAY, "c-3")
    assert first.ok and paid.ok
    assert second.error is not None and second.error.code == "quota_exceeded"
    assert "get_item reached its limit of 1 uses today" in second.error.message
