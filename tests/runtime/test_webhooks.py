"""Webhooks into live calls: inbox, correlation from a tool's answer, state, words, after_call."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from patchbay import CallContext, ToolRuntime
from patchbay._errors import ConfigErrors
from patchbay.observe import MemorySink
from patchbay.runtime._callevents import CallEvent
from patchbay.spec import load_config_text
from patchbay.state import (
    MemoryStore,
    PostgresStore,
    RedisStore,
    SQLiteStore,
    StateStore,
    open_store,
)
from patchbay.state._inbox import InboxEntry
from patchbay.testing import FaultProxy

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "billing"
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
JAMIE = "cus_8F2kLq"

CONFIG = """
version: 1
integrations:
  billing:
    base_url: ${BILLING_URL}
    auth: {type: api_key, header: X-API-Key, secret: env:BILLING_API_KEY}
    retry: {attempts: 2, backoff_s: 0.01, max_backoff_s: 0.02}
tools:
  create_payment:
    integration: billing
    description: Pay an invoice; it clears a moment later.
    parameters:
      invoice_id: {type: string}
      amount: {type: integer, minimum: 1}
      payment_method_id: {type: string}
    request:
      method: POST
      path: /payments
      body: {customer_id: "{call.state.customer_id}", invoice_id: "{args.invoice_id}",
             amount: "{args.amount}", payment_method_id: "{args.payment_method_id}",
             confirm: async}
    idempotency: {key: "call_{call.id}_invoice_{args.invoice_id}"}
    correlate: {payment_id: payment_id}
  get_customer:
    integration: billing
    description: Fetch a customer.
    parameters:
      customer_id: {type: string}
    request: {method: GET, path: "/customers/{customer_id}"}
webhooks:
  billing:
    verify: {scheme: standard, secret: env:BILLING_WEBHOOK_SECRET}
    on:
      payment.succeeded:
        call: {correlate: data.payment_id}
        state: {last_payment: data.confirmation_number}
        say: "Your payment has cleared; confirmation {data.confirmation_number}."
        after_call: {tool: get_customer, args: {customer_id: "{data.customer_id}"}}
      payment.noted:
        call: {id: data.call_id}
        say: "Noted for {call.caller}."
        after_call: {callback: true}
      payment.unmapped:
        call: {id: data.call_id}
"""

PAY = {"invoice_id": "inv_1001", "amount": 24700, "payment_method_id": "pm_card_visa4242"}


def signed(
    payload: Any, msg_id: str | None = None, secret: str = SECRET
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    msg_id = msg_id or "msg_" + secrets.token_hex(8)
    now = datetime.now(tz=UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body.decode()),
    }
    return headers, body


Factory = Callable[..., ToolRuntime]


@pytest.fixture
async def make(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Factory]:
    monkeypatch.setenv("BILLING_WEBHOOK_SECRET", SECRET)
    made: list[ToolRuntime] = []

    def build(store: StateStore | None = None, sink: MemorySink | None = None) -> ToolRuntime:
        cfg = load_config_text(CONFIG, base_dir=EXAMPLE_DIR, env=env)
        rt = ToolRuntime(cfg, sinks=[sink] if sink else [], store=store or MemoryStore())
        made.append(rt)
        return rt

    yield build
    for rt in made:
        await rt.close()


async def first_event(rt: ToolRuntime, call: str) -> CallEvent:
    async with asyncio.timeout(5):
        async for event in rt.call_events(call):
            return event
    raise AssertionError("no event")


async def events_of(rt: ToolRuntime, call: str) -> list[CallEvent]:
    """The events stored for a call so far (drained, without waiting for new ones)."""
    stream = rt.call_events(call)
    found: list[CallEvent] = []
    try:
        while True:
            found.append(await asyncio.wait_for(anext(stream), 0.3))
    except TimeoutError:
        pass
    finally:
        await stream.aclose()
    return found


async def pay(rt: ToolRuntime, call: CallContext) -> str:
    await rt.start_call(call)
    result = await rt.call_tool("create_payment", PAY, call)
    assert result.ok, result.error
    assert result.result["status"] == "processing"
    return str(result.result["payment_id"])


async def test_a_real_answer_correlates_and_the_webhook_reaches_the_call(make: Factory) -> None:
    rt = make()
    call = CallContext(id="c-live", caller="+14155550100", state={"customer_id": JAMIE})
    payment_id = await pay(rt, call)
    payload = {
        "type": "payment.succeeded",
        "data": {"payment_id": payment_id, "confirmation_number": "PAY-7Q2"},
    }
    status, answer = await rt.accept_webhook("billing", *signed(payload))
    assert (status, answer["ok"], answer["duplicate"]) == (200, True, False)
    event = await first_event(rt, "c-live")
    assert event.kind == "webhook" and event.event == "payment.succeeded"
    assert event.say == "Your payment has cleared; confirmation PAY-7Q2."
    # what the mapping selected and the delivery's id, nothing more
    assert event.data == {"last_payment": "PAY-7Q2", "webhook_id": answer["id"]}
    assert rt.call_context(call).state["last_payment"] == "PAY-7Q2"
    assert await rt.unmatched_webhooks() == []


async def test_replays_and_concurrent_duplicates_are_applied_once(make: Factory) -> None:
    rt = make()
    call = CallContext(id="c-dup", state={"customer_id": JAMIE})
    payment_id = await pay(rt, call)
    payload = {
        "type": "payment.succeeded",
        "data": {"payment_id": payment_id, "confirmation_number": "PAY-1"},
    }
    headers, body = signed(payload, msg_id="msg_same")
    answers = await asyncio.gather(
        *(rt.accept_webhook("billing", headers, body) for _ in range(10))
    )
    assert all(status == 200 for status, _ in answers)
    assert sum(not a["duplicate"] for _, a in answers) == 1
    assert await rt.drain_webhooks(5)
    # and once more after it was processed
    status, again = await rt.accept_webhook("billing", headers, body)
    assert (status, again["duplicate"]) == (200, True)
    assert await rt.drain_webhooks(5)
    assert [e.event for e in await events_of(rt, "c-dup")] == ["payment.succeeded"]


async def test_forged_stale_unknown_and_oversized_deliveries(make: Factory) -> None:
    rt = make()
    payload = {"type": "payment.succeeded", "data": {"payment_id": "pay_x"}}
    headers, body = signed(payload, secret="whsec_" + base64.b64encode(b"k" * 24).decode())
    status, answer = await rt.accept_webhook("billing", headers, body)
    assert status == 401 and answer["error"]["code"] == "unauthorized"
    assert "secret" not in json.dumps(answer) and "match" not in json.dumps(answer)
    headers, body = signed(payload)
    stale = {**headers, "webhook-timestamp": str(int(time.time()) - 3600)}
    assert (await rt.accept_webhook("billing", stale, body))[0] == 401
    assert (await rt.accept_webhook("nope", headers, body))[0] == 404
    big_headers, big = signed({"type": "x", "pad": "a" * 300_000})
    assert (await rt.accept_webhook("billing", big_headers, big))[0] == 413
    bad_headers, _ = signed({})
    not_json = b"{not json"
    now = datetime.now(tz=UTC)
    bad_headers["webhook-signature"] = Webhook(SECRET).sign(
        bad_headers["webhook-id"], now, not_json.decode()
    )
    bad_headers["webhook-timestamp"] = str(int(now.timestamp()))
    assert (await rt.accept_webhook("billing", bad_headers, not_json))[0] == 400
    assert await rt.pending_webhooks() == [] and await rt.unmatched_webhooks() == []


async def test_an_event_for_no_live_call_is_kept_as_unmatched(make: Factory) -> None:
    sink = MemorySink()
    rt = make(sink=sink)
    payload = {"type": "payment.succeeded", "data": {"payment_id": "pay_unknown"}}
    assert (await rt.accept_webhook("billing", *signed(payload, msg_id="m-u")))[0] == 200
    await rt.accept_webhook("billing", *signed({"type": "refund.created"}, msg_id="m-t"))
    assert await rt.drain_webhooks(5)
    kept = {r["id"]: r for r in await rt.unmatched_webhooks()}
    assert kept["m-u"]["reason"] == "no_call" and kept["m-u"]["payload"] == payload
    assert kept["m-t"]["reason"] == "no_rule" and kept["m-t"]["type"] == "refund.created"
    seen = [e for e in sink.events if e.kind == "webhook_unmatched"]
    assert sorted(e.outcome or "" for e in seen) == ["no_call", "no_rule"]
    assert all("payload" not in e.extra for e in seen)  # the body never reaches events


async def test_call_found_by_id_with_words_from_the_call(make: Factory) -> None:
    rt = make()
    await rt.start_call(CallContext(id="c-id", caller="+14155550123"))
    payload = {"type": "payment.noted", "data": {"call_id": "c-id"}}
    assert (await rt.accept_webhook("billing", *signed(payload)))[0] == 200
    event = await first_event(rt, "c-id")
    assert event.say == "Noted for +14155550123."


async def test_after_call_runs_once_through_the_outbox(make: Factory, proxy: FaultProxy) -> None:
    rt = make()
    call = CallContext(id="c-ended", caller="+14155550100", state={"customer_id": JAMIE})
    payment_id = await pay(rt, call)
    await rt.end_call(call)
    payload = {
        "type": "payment.succeeded",
        "data": {"payment_id": payment_id, "confirmation_number": "PAY-9", "customer_id": JAMIE},
    }
    headers, body = signed(payload, msg_id="msg_after")
    proxy.reset_stats()
    assert (await rt.accept_webhook("billing", headers, body))[0] == 200
    assert await rt.drain_webhooks(5)
    # the sender retries; and the inbox processes the same delivery again (a crash mid-way)
    assert (await rt.accept_webhook("billing", headers, body))[1]["duplicate"] is True
    await rt._webhooks.process(InboxEntry("billing", "msg_after", payload))
    assert await rt.drain(10)
    assert proxy.stats().by_path.get(f"GET /customers/{JAMIE}") == 1
    [kept] = await rt.unmatched_webhooks()
    assert kept["reason"] == "call_ended" and kept["call_id"] == "c-ended"
    reference = kept["after_call"]["reference"]
    outcome = await rt.background_outcome("c-ended", reference)
    assert outcome is not None and outcome["outcome"] == "ok"


async def test_after_call_callback_is_recorded_once(make: Factory) -> None:
    rt = make()
    await rt.start_call(CallContext(id="c-cb", caller="+14155550100"))
    await rt.end_call("c-cb")
    payload = {"type": "payment.noted", "data": {"call_id": "c-cb"}}
    headers, body = signed(payload, msg_id="msg_cb")
    await rt.accept_webhook("billing", headers, body)
    assert await rt.drain_webhooks(5)
    await rt._webhooks.process(InboxEntry("billing", "msg_cb", payload))
    [request] = await rt.callback_requests()
    assert request["call_id"] == "c-cb" and request["request"]["webhook"] == "billing"


async def test_event_without_after_call_for_an_ended_call_is_kept(make: Factory) -> None:
    rt = make()
    await rt.start_call("c-gone")
    await rt.end_call("c-gone")
    await rt.accept_webhook(
        "billing", *signed({"type": "payment.unmapped", "data": {"call_id": "c-gone"}})
    )
    assert await rt.drain_webhooks(5)
    [kept] = await rt.unmatched_webhooks()
    assert (kept["reason"], kept["after_call"]) == ("call_ended", None)


@pytest.mark.parametrize("backend", ["sqlite", "redis", "redis-cluster", "postgresql"])
async def test_durable_stores_dedupe_and_correlate(
    make: Factory, backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store: StateStore
    if backend == "sqlite":
        store = SQLiteStore(str(tmp_path / "state.db"))
    elif backend == "redis-cluster":
        url = request.getfixturevalue("redis_cluster_url")
        prefix = request.getfixturevalue("redis_cluster_prefix")
        store = open_store(url, key_prefix=prefix)
    elif backend == "postgresql":
        url = request.getfixturevalue("postgres_url")
        store = PostgresStore(url, prefix=request.getfixturevalue("postgres_key_prefix"))
    else:
        url = request.getfixturevalue("redis_url")
        store = RedisStore(url, prefix=request.getfixturevalue("redis_key_prefix"))
    rt = make(store=store)
    call = CallContext(id="c-store", state={"customer_id": JAMIE})
    payment_id = await pay(rt, call)
    payload = {
        "type": "payment.succeeded",
        "data": {"payment_id": payment_id, "confirmation_number": "PAY-S"},
    }
    headers, body = signed(payload)
    answers = await asyncio.gather(
        *(rt.accept_webhook("billing", headers, body) for _ in range(10))
    )
    assert sum(not a["duplicate"] for _, a in answers) == 1
    assert await rt.drain_webhooks(5)
    assert [e.say for e in await events_of(rt, "c-store")] == [
        "Your payment has cleared; confirmation PAY-S."
    ]


def test_config_mistakes_are_reported(env: dict[str, str]) -> None:
    text = (
        CONFIG.replace("{tool: get_customer,", "{tool: send_receipt,")
        .replace('say: "Noted for {call.caller}."', 'say: "Noted {call.nope}"')
        .replace("correlate: {payment_id: payment_id}", "correlate: {payment_id: 'payment_id[['}")
    )
    with pytest.raises(ConfigErrors) as caught:
        load_config_text(text, base_dir=EXAMPLE_DIR, env=env)
    text = str(caught.value)
    assert "after_call.tool: unknown tool 'send_receipt'" in text
    assert "payment.noted.say: unknown placeholder {call.nope}" in text
    assert "tools.create_payment.correlate.payment_id: invalid JMESPath" in text


async def test_correlation_keys_belong_to_the_calls_tenant(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BILLING_WEBHOOK_SECRET", SECRET)
    text = CONFIG.replace(
        "    retry: {attempts: 2", "    tenants: {acme: {}}\n    retry: {attempts: 2"
    ).replace(
        "      payment.noted:",
        "      payment.acme:\n"
        "        call: {correlate: data.payment_id, tenant: \"'acme'\"}\n"
        '        say: "Cleared for acme."\n'
        "      payment.noted:",
    )
    cfg = load_config_text(text, base_dir=EXAMPLE_DIR, env=env)
    async with ToolRuntime(cfg, sinks=[], store=MemoryStore()) as rt:
        call = CallContext(id="c-t", tenant="acme", state={"customer_id": JAMIE})
        payment_id = await pay(rt, call)
        # a source that names no tenant cannot reach acme's call
        plain = {"type": "payment.succeeded", "data": {"payment_id": payment_id}}
        await rt.accept_webhook("billing", *signed(plain, msg_id="m-plain"))
        assert await rt.drain_webhooks(5)
        assert [r["reason"] for r in await rt.unmatched_webhooks()] == ["no_call"]
        acme = {"type": "payment.acme", "data": {"payment_id": payment_id}}
        await rt.accept_webhook("billing", *signed(acme, msg_id="m-acme"))
        stream = rt.call_events("c-t", tenant="acme")
        event = await asyncio.wait_for(anext(stream), 5)
        await stream.aclose()
        assert (event.say, event.tenant) == ("Cleared for acme.", "acme")
