"""Call events in an embedded runtime: published, replayed, ended, and the runtime's own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from patchbay import CallContext, ToolRuntime
from patchbay.runtime import CallEvent
from patchbay.runtime._callevents import MAX_EVENTS, CallEvents
from patchbay.runtime._failure import DONE_WORDS
from patchbay.spec import load_config_text
from patchbay.state import MemoryStore
from patchbay.state._pubsub import notifier_for
from patchbay.testing import BillingServer, Fault, FaultProxy

RuntimeFactory = Callable[..., ToolRuntime]
EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "billing"
PAY_1001 = {"invoice_id": "inv_1001", "amount": 24700, "payment_method_id": "pm_card_visa4242"}
JAMIE = {"phone": "+15551234567"}

BACKGROUND = """
version: 1
integrations:
  billing:
    base_url: ${BILLING_URL}
    auth: {type: api_key, header: X-API-Key, secret: env:BILLING_API_KEY}
    timeout_s: 2
    retry: {attempts: 3, backoff_s: 0.02, max_backoff_s: 0.05}
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
    description: Pay an invoice; the confirmation follows.
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
      fields: {confirmation_number: confirmation_number}
    mode: background
    say: {accepted: "I've started the payment."}
"""


async def _collect(rt: ToolRuntime, call: CallContext | str, **kw: object) -> list[CallEvent]:
    return [event async for event in rt.call_events(call, **kw)]  # type: ignore[arg-type]


async def _next(stream: object) -> CallEvent:
    return await asyncio.wait_for(stream.__anext__(), 5)  # type: ignore[attr-defined]


async def test_a_subscriber_gets_a_published_event_and_ends_with_the_call(
    make_runtime: RuntimeFactory,
) -> None:
    rt = make_runtime()
    await rt.start_call("c-ev")
    async with rt.call_events("c-ev") as stream:
        waiting = asyncio.ensure_future(_next(stream))
        await asyncio.sleep(0)
        sent = await rt.publish_call_event(
            "c-ev",
            tenant=None,
            kind="webhook",
            event="payment.succeeded",
            say="Your payment has cleared.",
            data={"confirmation_number": "PAY-1"},
        )
        got = await waiting
        assert got == sent
        assert (got.kind, got.event, got.say) == ("webhook", "payment.succeeded", sent.say)
        assert got.data == {"confirmation_number": "PAY-1"} and got.call_id == "c-ev"
        assert got.to_dict()["id"] == got.id == "1"
        later = await rt.publish_call_event("c-ev", tenant=None, kind="completion", event="x")
        assert (await _next(stream)).id == later.id == "2"
        ending = asyncio.ensure_future(_next(stream))
        await rt.end_call("c-ev")
        with pytest.raises(StopAsyncIteration):
            await ending


async def test_replay_after_an_id_then_only_new_events(make_runtime: RuntimeFactory) -> None:
    rt = make_runtime()
    await rt.start_call("c-replay")
    for name in ("a", "b", "c"):
        await rt.publish_call_event("c-replay", tenant=None, kind="webhook", event=name)
    stream = rt.call_events("c-replay", after="1")
    assert [(await _next(stream)).event for _ in range(2)] == ["b", "c"]
    await rt.publish_call_event("c-replay", tenant=None, kind="webhook", event="d")
    assert (await _next(stream)).event == "d"
    await stream.aclose()
    await rt.end_call("c-replay")
    # An ended call's stream replays what is kept and ends at once; None replays everything.
    assert [e.event for e in await _collect(rt, "c-replay")] == ["a", "b", "c", "d"]
    assert [e.id for e in await _collect(rt, "c-replay", after="3")] == ["4"]


async def test_a_call_is_live_between_start_and_end(make_runtime: RuntimeFactory) -> None:
    rt = make_runtime()
    assert not await rt.call_is_live("c-live")
    await rt.start_call("c-live")
    assert await rt.call_is_live("c-live")
    assert not await rt.call_is_live("c-live", tenant="acme"), "another tenant's call"
    await rt.end_call("c-live")
    assert not await rt.call_is_live("c-live")


async def test_a_tool_call_makes_its_call_live(make_runtime: RuntimeFactory) -> None:
    rt = make_runtime()
    assert (await rt.call_tool("lookup_customer_invoices", JAMIE, "c-tool")).ok
    assert await rt.call_is_live("c-tool")


async def test_tenants_see_only_their_own_call_events(make_runtime: RuntimeFactory) -> None:
    rt = make_runtime()
    await rt.publish_call_event("c-same", tenant="acme", kind="webhook", event="acme.only")
    await rt.publish_call_event("c-same", tenant=None, kind="webhook", event="untenanted")
    for tenant in ("acme", "globex", None):
        await rt.end_call("c-same", tenant=tenant)
    assert [e.event for e in await _collect(rt, "c-same", tenant="acme")] == ["acme.only"]
    assert await _collect(rt, "c-same", tenant="globex") == []
    assert [e.event for e in await _collect(rt, "c-same")] == ["untenanted"]
    acme_call = CallContext(id="c-same", tenant="acme")
    assert [e.tenant for e in await _collect(rt, acme_call)] == ["acme"]


async def test_bad_events_and_ids_are_refused_clearly(make_runtime: RuntimeFactory) -> None:
    rt = make_runtime()
    with pytest.raises(ValueError, match="unknown call event kind"):
        await rt.publish_call_event("c-bad", tenant=None, kind="gossip", event="x")
    with pytest.raises(ValueError, match="whole number"):
        rt.call_events("c-bad", after="abc")
    assert await _collect_ended(rt, "c-bad") == []


async def _collect_ended(rt: ToolRuntime, call_id: str) -> list[CallEvent]:
    await rt.end_call(call_id)
    return await _collect(rt, call_id)


async def test_the_log_keeps_the_last_events_only(make_runtime: RuntimeFactory) -> None:
    rt = make_runtime()
    for n in range(MAX_EVENTS + 5):
        await rt.publish_call_event("c-many", tenant=None, kind="webhook", event=f"e{n}")
    kept = await _collect_ended(rt, "c-many")
    assert len(kept) == MAX_EVENTS
    assert (kept[0].id, kept[-1].id) == ("6", str(MAX_EVENTS + 5))


async def test_two_runtimes_on_one_store_share_events(env: dict[str, str]) -> None:
    store = MemoryStore()
    text = BACKGROUND
    a = ToolRuntime(load_config_text(text, base_dir=EXAMPLE_DIR, env=env), sinks=[], store=store)
    b = ToolRuntime(load_config_text(text, base_dir=EXAMPLE_DIR, env=env), sinks=[], store=store)
    async with a, b:
        await a.start_call("c-pair")
        assert await b.call_is_live("c-pair")
        stream = b.call_events("c-pair")
        waiting = asyncio.ensure_future(_next(stream))
        await asyncio.sleep(0)
        sent = await a.publish_call_event("c-pair", tenant=None, kind="webhook", event="hi")
        assert await waiting == sent
        await a.end_call("c-pair")
        with pytest.raises(StopAsyncIteration):
            await _next(stream)


async def test_a_background_write_outcome_arrives_as_an_event(
    env: dict[str, str], proxy: FaultProxy, billing: BillingServer
) -> None:
    config = load_config_text(BACKGROUND, base_dir=EXAMPLE_DIR, env=env)
    async with ToolRuntime(config, sinks=[]) as rt:
        call = CallContext(id="c-bgev")
        await rt.start_call(call)
        stream = rt.call_events(call)
        assert (await rt.call_tool("lookup_customer_invoices", JAMIE, call)).ok
        accepted = await rt.call_tool("create_payment", PAY_1001, call)
        assert accepted.ok and accepted.result["status"] == "accepted"
        event = await _next(stream)
        await stream.aclose()
    ledger = await billing.ledger()
    assert ledger["charges_by_invoice"] == {"inv_1001": 1}
    confirmation = ledger["payments"][0]["confirmation_number"]
    assert (event.kind, event.event, event.say) == ("background", "create_payment", DONE_WORDS)
    assert event.data["ok"] is True and event.data["outcome"] == "ok"
    assert event.data["reference"] == accepted.result["reference"]
    assert event.data["result"] == {"confirmation_number": confirmation}


async def test_a_failed_background_write_says_it_did_not_go_through(
    env: dict[str, str], proxy: FaultProxy, billing: BillingServer
) -> None:
    config = load_config_text(BACKGROUND, base_dir=EXAMPLE_DIR, env=env)
    async with ToolRuntime(config, sinks=[]) as rt:
        call = CallContext(id="c-bg404")
        stream = rt.call_events(call)
        assert (await rt.call_tool("lookup_customer_invoices", JAMIE, call)).ok
        wrong = {**PAY_1001, "invoice_id": "inv_2001", "amount": 100}  # the API answers 404
        assert (await rt.call_tool("create_payment", wrong, call)).ok
        event = await _next(stream)
        await stream.aclose()
    assert (event.kind, event.data["outcome"], event.data["ok"]) == (
        "background",
        "not_found",
        False,
    )
    assert event.say is not None and "did not go through" in event.say
    assert "result" not in event.data


async def test_a_reconciled_pending_write_arrives_as_a_pending_event(
    make_runtime: RuntimeFactory, proxy: FaultProxy, billing: BillingServer
) -> None:
    rt = make_runtime()
    call = CallContext(id="c-lostev")
    assert (await rt.call_tool("lookup_customer_invoices", JAMIE, call)).ok
    stream = rt.call_events(call)
    # Every attempt charges and loses its answer: the caller hears `pending`.
    proxy.add(Fault("lose_response", method="POST", path_prefix="/payments", times=3))
    result = await rt.call_tool("create_payment", PAY_1001, call)
    assert result.error is not None and result.error.code == "pending"
    event = await _next(stream)  # the confirmation resends with the same key, in the background
    await stream.aclose()
    ledger = await billing.ledger()
    assert ledger["charges_by_invoice"] == {"inv_1001": 1}
    assert (event.kind, event.event, event.say) == ("pending", "create_payment", DONE_WORDS)
    assert (event.data["outcome"], event.data["status"]) == ("ok", 201)
    confirmation = ledger["payments"][0]["confirmation_number"]
    assert event.data["result"]["confirmation_number"] == confirmation
    assert event.data["key"] == "call_c-lostev_invoice_inv_1001"


async def test_events_arriving_out_of_order_are_handed_over_in_id_order() -> None:
    store = MemoryStore()
    events = CallEvents(store)
    stream = events.stream("c-order", None)
    first = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0)  # subscribed, the (empty) log read
    # Two publishers: the second's event is stored and announced before the first's.
    texts = {}
    for n in (1, 2):
        event = CallEvent(str(n), "webhook", f"e{n}", None, {}, "c-order", None)
        texts[n] = json.dumps(event.to_dict()).encode()
        await store.set(f"callev:c-order:{n}", texts[n])
    await store.set("callev:c-order:seq", b"2")
    notifier = notifier_for(store)
    await notifier.publish("callev:c-order", b"E" + texts[2])
    await asyncio.sleep(0)
    assert not first.done(), "2 waits for 1"
    await notifier.publish("callev:c-order", b"E" + texts[1])
    assert (await asyncio.wait_for(first, 5)).id == "1"
    assert (await asyncio.wait_for(stream.__anext__(), 5)).id == "2"
    await stream.aclose()


async def test_a_later_id_stored_first_waits_for_the_earlier_one_in_the_replay() -> None:
    store = MemoryStore()
    events = CallEvents(store)
    notifier = notifier_for(store)
    # Two publishers took ids 1 and 2; the second stored its event first, and a follower
    # subscribes in between: its replay of the log must not hand 2 over (and lose 1).
    texts = {}
    for n in (1, 2):
        event = CallEvent(str(n), "webhook", f"e{n}", None, {}, "c-race", None)
        texts[n] = json.dumps(event.to_dict()).encode()
    await store.set("callev:c-race:seq", b"2")
    await store.set("callev:c-race:2", texts[2])
    stream = events.stream("c-race", None)
    first = asyncio.ensure_future(stream.__anext__())
    for _ in range(5):
        await asyncio.sleep(0)  # subscribed, the log read: only 2 is there
    assert not first.done(), "2 waits for 1"
    await store.set("callev:c-race:1", texts[1])
    await notifier.publish("callev:c-race", b"E" + texts[1])
    assert (await asyncio.wait_for(first, 5)).id == "1"
    assert (await asyncio.wait_for(stream.__anext__(), 5)).id == "2"
    await stream.aclose()


async def test_an_id_that_never_got_stored_is_skipped_not_waited_for_forever() -> None:
    store = MemoryStore()
    events = CallEvents(store)
    # A publisher took id 1 and died before storing it.
    assert await store.incr("callev:c-hole:seq") == 1
    stream = events.stream("c-hole", None)
    waiting = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0)
    sent = await events.publish("c-hole", tenant=None, kind="webhook", event="after-hole")
    assert sent.id == "2"
    assert await asyncio.wait_for(waiting, 5) == sent
    await stream.aclose()
