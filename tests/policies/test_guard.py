"""Anomaly guards: a runaway agent is stopped and reported; limits per minute, per tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from patchbay import CallContext, ToolRuntime
from patchbay._errors import ConfigError, QuotaExceeded
from patchbay.docs import render_markdown
from patchbay.observe import Emitter, MemorySink, PrometheusSink
from patchbay.policies import GuardPolicy
from patchbay.spec import Config, load_config_text
from patchbay.state import MemoryStore, RedisStore, StateStore
from patchbay.testing import BillingServer, FaultProxy

from .support import Clock, FakeTransport, make_config, make_runtime

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "billing"
MORGAN = {"phone": "+15559876543"}  # twelve open invoices, inv_2001 to inv_2012
OFFER = "offer to transfer them to a person or to arrange a callback"


def _example(env: dict[str, str], guard: dict[str, Any]) -> Config:
    data = yaml.safe_load((EXAMPLE / "patchbay.yaml").read_text())
    data["tools"]["create_payment"]["guard"] = guard
    return load_config_text(yaml.safe_dump(data), base_dir=EXAMPLE, env=env)


def _payment(n: int) -> dict[str, Any]:
    invoice = f"inv_{2001 + n % 12}"
    return {"invoice_id": invoice, "amount": 1000, "payment_method_id": "pm_card_mc5454"}


async def _loop(rt: ToolRuntime, call_id: str, times: int, first: int = 0) -> list[Any]:
    call = CallContext(id=call_id)
    assert (await rt.call_tool("lookup_customer_invoices", MORGAN, call)).ok
    pay = [_payment(n) for n in range(first, first + times)]
    return [await rt.call_tool("create_payment", args, call) for args in pay]


def _anomalies(sink: PrometheusSink) -> dict[tuple[str, str, str], float]:
    found = {}
    for family in text_string_to_metric_families(sink.exposition().decode()):
        for s in family.samples:
            if s.name == "patchbay_anomalies_total":
                found[(s.labels["tool"], s.labels["tenant"], s.labels["kind"])] = s.value
    return found


async def test_a_runaway_payment_loop_is_stopped_after_the_limit_and_reported(
    env: dict[str, str], proxy: FaultProxy, billing: BillingServer
) -> None:
    config = _example(env, {"max_per_call": 3, "action": "block"})
    events, metrics = MemorySink(), PrometheusSink(tools=config.tools)
    async with ToolRuntime(config, sinks=[events, metrics]) as rt:
        results = await _loop(rt, "c-runaway", 20)
        # Only the looping call is stopped: another caller of the same line can still pay.
        [other] = await _loop(rt, "c-next", 1, first=11)

    assert [r.ok for r in results] == [True] * 3 + [False] * 17
    for refused in results[3:]:
        assert refused.error is not None and refused.error.code == "quota_exceeded"
        assert not refused.error.retryable
        assert refused.error.message == (
            "create_payment was already called 3 times in this call, the most allowed, so "
            "nothing was sent. Do not call it again in this call: tell the caller it cannot be "
            f"done right now and {OFFER}."
        )
        assert refused.say == "I couldn't take the payment right now; nothing was charged."
        assert refused.meta["attempts"] == 0
    assert other.ok
    assert proxy.stats().by_path["POST /payments"] == 4, "three in the runaway call, one after"
    assert len((await billing.ledger())["payments"]) == 4

    [anomaly] = events.of_kind("anomaly")
    assert (anomaly.tool, anomaly.call_id, anomaly.outcome) == (
        "create_payment",
        "c-runaway",
        "blocked",
    )
    assert anomaly.integration == "billing"
    assert dict(anomaly.extra) == {"kind": "per_call", "limit": 3, "count": 4, "action": "block"}
    assert _anomalies(metrics) == {("create_payment", "", "per_call"): 1.0}


async def test_alert_only_sends_every_call_and_reports_the_excess_once(
    env: dict[str, str], proxy: FaultProxy
) -> None:
    config = _example(env, {"max_per_call": 3})  # action: alert is the default
    events = MemorySink()
    async with ToolRuntime(config, sinks=[events]) as rt:
        results = await _loop(rt, "c-loop", 7)
    assert all(r.ok for r in results), [r.to_dict() for r in results if not r.ok]
    assert proxy.stats().by_path["POST /payments"] == 7
    [anomaly] = events.of_kind("anomaly")
    assert anomaly.outcome == "alert" and anomaly.extra["kind"] == "per_call"
    assert anomaly.extra["count"] == 4


async def test_a_guard_counts_only_its_own_tool() -> None:
    store, transport = MemoryStore(), FakeTransport()
    config = make_config(tools={"pay": {"guard": {"max_per_call": 1, "action": "block"}}})
    async with make_runtime(config, transport, store=store) as rt:
        reads = [await rt.call_tool("get_item", {"item_id": str(n)}, "c-1") for n in range(5)]
        first = await rt.call_tool("pay", {"invoice_id": "inv_1", "amount": 5}, "c-1")
        second = await rt.call_tool("pay", {"invoice_id": "inv_2", "amount": 5}, "c-1")
    assert all(r.ok for r in reads) and first.ok
    assert second.error is not None and second.error.code == "quota_exceeded"
    assert len(transport.sent) == 6


async def test_a_background_write_is_counted_when_accepted_and_refused_before_queueing() -> None:
    transport = FakeTransport()
    guard = {"max_per_call": 1, "action": "block"}
    config = make_config(tools={"pay": {"mode": "background", "guard": guard}})
    async with make_runtime(config, transport) as rt:
        first = await rt.call_tool("pay", {"invoice_id": "inv_1", "amount": 5}, "c-1")
        second = await rt.call_tool("pay", {"invoice_id": "inv_2", "amount": 5}, "c-1")
        assert await rt.drain(10.0)
        assert await rt.pending_background() == []
    assert first.ok and first.result["status"] == "accepted"
    assert second.error is not None and second.error.code == "quota_exceeded"
    assert len(transport.sent) == 1, "the outbox sent the accepted write, uncounted again"


async def test_a_tenant_the_integration_refuses_is_refused_before_it_is_counted() -> None:
    transport = FakeTransport()
    config = make_config(
        {"tenants": {"acme": {}}},
        {"pay": {"guard": {"max_per_minute": 1, "action": "block"}}},
    )
    pay = {"invoice_id": "inv_1", "amount": 5}
    async with make_runtime(config, transport) as rt:
        made_up = [
            await rt.call_tool("pay", pay, CallContext(id=f"c-{n}", tenant="made-up"))
            for n in range(3)
        ]
        own = await rt.call_tool("pay", pay, CallContext(id="c-own"))
    assert [r.error.code if r.error else None for r in made_up] == ["unauthorized"] * 3
    assert own.ok, "the integration's own count was not used up by refused tenants"
    assert len(transport.sent) == 1


def test_a_guard_that_guards_nothing_is_refused() -> None:
    with pytest.raises(ConfigError) as refused:
        make_config(tools={"pay": {"guard": {"action": "block"}}})
    assert "tools.pay.guard" in str(refused.value)
    assert "give at least one of max_per_call, max_per_minute or baseline" in str(refused.value)
    with pytest.raises(ConfigError, match="action"):
        make_config(tools={"pay": {"guard": {"max_per_call": 3, "action": "stop"}}})


def test_the_generated_docs_state_the_guard(env: dict[str, str]) -> None:
    config = _example(env, {"max_per_call": 3, "max_per_minute": 60, "action": "block"})
    text = render_markdown(config, [])["billing.md"]
    pay = text[text.index("## create_payment\n") :]
    assert (
        "| anomaly guard | 3 calls per phone call, 60 calls a minute per tenant; over a limit: "
        "reported and refused (a minute over: for 300 s) |"
    ) in pay
    assert "| quota_exceeded | the tool's guard stopped a runaway agent: no request |" in pay


# Replicas: two guards over one state (one memory store, or two Redis clients).
Replicas = tuple[GuardPolicy, GuardPolicy]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[tuple[StateStore, StateStore]]:
    if request.param == "memory":
        shared = MemoryStore()
        yield shared, shared
        await shared.close()
        return
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_key_prefix")
    one, two = RedisStore(url, prefix=prefix), RedisStore(url, prefix=prefix)
    yield one, two
    await one.close()
    await two.close()


@pytest.fixture
def guards(
    stores: tuple[StateStore, StateStore],
) -> Callable[[Clock, MemorySink], Replicas]:
    def make(clock: Clock, sink: MemorySink) -> Replicas:
        emitter = Emitter([sink])
        first = GuardPolicy(stores[0], emitter, clock=clock)
        return first, GuardPolicy(stores[1], emitter, clock=clock)

    return make


def _guarded(guard: dict[str, Any], tenants: tuple[str, ...] = ()) -> Config:
    return make_config(
        {"tenants": {t: {} for t in tenants}, "unknown_tenants": "default"},
        {"pay": {"guard": guard}},
    )


async def _allowed(guard: GuardPolicy, config: Config, call: CallContext) -> bool:
    try:
        await guard.check(config.tools["pay"], call, config.integrations["api"])
    except QuotaExceeded:
        return False
    return True


async def test_a_minute_past_the_limit_blocks_the_tool_for_the_cool_off(
    guards: Callable[[Clock, MemorySink], Replicas],
) -> None:
    clock, sink = Clock(60 * 28_333_333.0), MemorySink()  # the start of a minute
    one, two = guards(clock, sink)
    config = _guarded({"max_per_minute": 5, "action": "block", "cool_off_s": 120})
    # Calls on both replicas count together, each from its own phone call.
    allowed = [
        await _allowed((one, two)[n % 2], config, CallContext(id=f"c-{n}")) for n in range(6)
    ]
    assert allowed == [True] * 5 + [False]
    clock.advance(61)  # a new minute, but still cooling off
    with pytest.raises(QuotaExceeded) as refused:
        await two.check(config.tools["pay"], CallContext(id="c-7"), config.integrations["api"])
    assert refused.value.message == (
        "pay is paused for this account for about 1 minute because it was called unusually "
        f"often, so nothing was sent. Do not try again: tell the caller it cannot be done "
        f"right now and {OFFER}."
    )
    assert not refused.value.retryable
    clock.advance(60)  # the cool-off is over
    assert await _allowed(one, config, CallContext(id="c-8"))
    [anomaly] = sink.of_kind("anomaly")
    assert anomaly.outcome == "blocked"
    assert dict(anomaly.extra) == {
        "kind": "per_minute",
        "limit": 5,
        "count": 6,
        "action": "block",
        "cool_off_s": 120.0,
    }


async def test_alert_only_per_minute_lets_calls_through_and_counts_minutes_apart(
    guards: Callable[[Clock, MemorySink], Replicas],
) -> None:
    clock, sink = Clock(60 * 28_333_333.0), MemorySink()
    one, _ = guards(clock, sink)
    config = _guarded({"max_per_minute": 2})
    assert all([await _allowed(one, config, CallContext(id="c-1")) for _ in range(4)])
    clock.advance(60)
    assert all([await _allowed(one, config, CallContext(id="c-1")) for _ in range(3)])
    counts = [(e.outcome, e.extra["count"]) for e in sink.of_kind("anomaly")]
    assert counts == [("alert", 3), ("alert", 3)], "one report per minute that went past"


async def test_tenants_are_counted_apart(
    guards: Callable[[Clock, MemorySink], Replicas],
) -> None:
    clock, sink = Clock(60 * 28_333_333.0), MemorySink()
    one, two = guards(clock, sink)
    config = _guarded(
        {"max_per_minute": 2, "max_per_call": 2, "action": "block"}, ("acme", "globex")
    )

    async def calls(tenant: str | None, call_id: str, times: int) -> list[bool]:
        call = CallContext(id=call_id, tenant=tenant)
        return [await _allowed((one, two)[n % 2], config, call) for n in range(times)]

    assert await calls("acme", "c-1", 3) == [True, True, False]  # past its per-call limit
    assert await calls("globex", "c-1", 2) == [True, True], "the same call id of another tenant"
    assert await calls("acme", "c-2", 1) == [False], "acme's minute is used up: blocked"
    assert await calls("globex", "c-2", 1) == [False]
    # Tenants the integration does not list share the integration's own count.
    assert await calls("made-up-1", "c-3", 1) == [True]
    assert await calls(None, "c-4", 1) == [True]
    assert await calls("made-up-2", "c-5", 1) == [False]
    reported = [(e.tenant, e.extra["kind"]) for e in sink.of_kind("anomaly")]
    assert reported == [
        ("acme", "per_call"),
        ("acme", "per_minute"),
        ("globex", "per_minute"),
        ("made-up-2", "per_minute"),
    ]


async def test_a_minute_far_above_the_moving_baseline_is_reported(
    guards: Callable[[Clock, MemorySink], Replicas],
) -> None:
    clock, sink = Clock(60 * 28_333_333.0), MemorySink()
    one, two = guards(clock, sink)
    baseline = {"factor": 3, "min_per_minute": 5, "half_life_min": 1, "warmup_min": 2}
    config = _guarded({"baseline": baseline, "action": "block"})

    async def minute(calls: int) -> None:
        for n in range(calls):
            assert await _allowed((one, two)[n % 2], config, CallContext(id=f"c-{n}"))
        clock.advance(60)

    await minute(4)
    await minute(20)  # a surge while warming up is not judged
    assert sink.of_kind("anomaly") == []
    # The usual rate is now 0.5 * 20 + 0.5 * (0.5 * 4) = 11 a minute: 33 is the threshold.
    await minute(33)
    assert sink.of_kind("anomaly") == []
    await minute(40)  # 22 a minute: 66 would have been anomalous
    await minute(94)  # 31 a minute: the 94th call passes the threshold of 93
    [anomaly] = sink.of_kind("anomaly")
    assert anomaly.outcome == "alert", "a baseline only alerts, even with action: block"
    assert dict(anomaly.extra) == {
        "kind": "baseline",
        "limit": 93.0,
        "count": 94,
        "action": "block",
        "baseline_per_minute": 31.0,
    }
