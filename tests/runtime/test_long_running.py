"""Long-running tools (`completion:`): the start answer completed by its webhook, inline or later
as a call event, with the real billing service's asynchronous payments."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from standardwebhooks import Webhook

from patchbay import CallContext, ToolResult, ToolRuntime
from patchbay._errors import ConfigErrors
from patchbay.runtime import CallEvent
from patchbay.spec import load_config_text
from patchbay.state import RedisStore, StateStore
from patchbay.testing import BillingServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "billing"
CALLER = "+15559876543"
Forward = Callable[[Mapping[str, str], bytes], Awaitable[tuple[int, Any]]]


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def config_text(completion: str | None) -> str:
    """The async billing example with `completion:` on create_payment_async."""
    text = (EXAMPLE / "async.yaml").read_text(encoding="utf-8")
    anchor = "    correlate: {payment_id: payment_id}\n"
    assert anchor in text
    if completion is not None:
        text = text.replace(anchor, anchor + f"    completion: {completion}\n")
    return text


class Receiver:
    """The agent's webhook endpoint: hands each delivery to the runtime."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.accepted = asyncio.Event()
        self.forward: Forward | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.got.append((dict(request.headers), raw))
        assert self.forward is not None
        status, _ = await self.forward(dict(request.headers), raw)
        if 200 <= status < 300:
            self.accepted.set()
        return web.Response(status=status)


@asynccontextmanager
async def scene(
    monkeypatch: pytest.MonkeyPatch,
    delay_s: float,
    wait_s: float,
    stores: tuple[StateStore, StateStore] | None = None,
) -> AsyncIterator[tuple[ToolRuntime, BillingServer, Receiver, str]]:
    """The tool's runtime; with `stores`, webhooks are taken by a second replica sharing them."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/billing", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/billing"
    secret = new_secret()
    completion = (
        "{webhook: billing, event: payment.succeeded, match: data.payment_id, "
        f"wait_s: {wait_s}, say: 'The payment is processing; I will confirm it shortly.'}}"
    )
    try:
        async with BillingServer(
            in_process=True,
            webhook_url=receiver.url,
            webhook_secret=secret,
            webhook_delay_s=delay_s,
            webhook_backoff_s=0.05,
        ) as server:
            monkeypatch.setenv("BILLING_API_KEY", server.api_key)
            monkeypatch.setenv("BILLING_WEBHOOK_SECRET", secret)
            monkeypatch.delenv("PATCHBAY_STATE", raising=False)
            config = load_config_text(
                config_text(completion), EXAMPLE, env={"BILLING_URL": server.url}
            )
            first, second = stores or (None, None)
            async with AsyncExitStack() as stack:
                runtime = await stack.enter_async_context(ToolRuntime(config, store=first))
                door = runtime
                if second is not None:
                    door = await stack.enter_async_context(ToolRuntime(config, store=second))

                async def forward(headers: Mapping[str, str], body: bytes) -> tuple[int, Any]:
                    return await door.accept_webhook("billing", headers, body)

                receiver.forward = forward
                yield runtime, server, receiver, secret
    finally:
        await runner.cleanup()


async def pay(runtime: ToolRuntime, call: CallContext) -> ToolResult:
    await runtime.start_call(call)
    found = await runtime.call_tool("lookup_customer_invoices", {"phone": CALLER}, call)
    assert found.ok, found.to_dict()
    invoice = found.result["invoices"][0]
    args = {"invoice_id": invoice["invoice_id"], "amount": invoice["amount"],
            "payment_method_id": "pm_card_mc5454"}  # fmt: skip
    return await runtime.call_tool("create_payment_async", args, call)


async def all_events(runtime: ToolRuntime, call: CallContext) -> list[CallEvent]:
    """Every event the call got, once processing is done (the call is ended to read them)."""
    assert await runtime.drain_webhooks(10)
    await runtime.end_call(call)
    return [event async for event in runtime.call_events(call)]


async def send_again(runtime: ToolRuntime, receiver: Receiver, secret: str) -> None:
    """The same event delivered once more under a new delivery id (a sender's duplicate)."""
    _, body = receiver.got[0]
    now = datetime.now(tz=UTC)
    signature = Webhook(secret).sign("msg_again", now, body.decode())
    headers = {
        "webhook-id": "msg_again",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    status, answer = await runtime.accept_webhook("billing", headers, body)
    assert (status, answer["duplicate"]) == (200, False)
    assert await runtime.drain_webhooks(10)


async def test_a_webhook_within_wait_s_completes_the_answer_inline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with scene(monkeypatch, delay_s=0.05, wait_s=5) as (runtime, server, receiver, secret):
        call = CallContext(id="c-lr-1", caller=CALLER)
        answer = await pay(runtime, call)
        assert answer.ok, answer.to_dict()
        payment = await server.payment(answer.result["payment_id"])
        assert payment["status"] == "succeeded"
        confirmation = payment["confirmation_number"]
        assert answer.result["confirmation_number"] == confirmation
        assert answer.meta["completed_by"] == "webhook"
        assert answer.say == f"Your payment has cleared; confirmation {confirmation}."
        assert runtime.call_context(call).state["last_payment"] == confirmation
        await send_again(runtime, receiver, secret)
        events = await all_events(runtime, call)
        # Answered inline: not spoken again as an event, nor by the duplicate delivery.
        assert [e.kind for e in events] == []
        assert (await server.ledger())["charges_by_invoice"] == {"inv_2001": 1}


async def test_a_later_webhook_answers_pending_then_arrives_as_a_completion_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with scene(monkeypatch, delay_s=1.5, wait_s=0.2) as (runtime, server, receiver, secret):
        call = CallContext(id="c-lr-2", caller=CALLER)
        async with runtime.call_events(call) as events:
            answer = await pay(runtime, call)
            assert not answer.ok
            assert answer.error is not None and answer.error.code == "pending"
            assert answer.say == "The payment is processing; I will confirm it shortly."
            assert answer.meta["completion"] == "pending"
            payment_id = answer.result["payment_id"]
            event = await asyncio.wait_for(anext(events), 10)
        confirmation = (await server.payment(payment_id))["confirmation_number"]
        assert (event.kind, event.event) == ("completion", "payment.succeeded")
        assert event.data["tool"] == "create_payment_async"
        assert event.data["result"]["confirmation_number"] == confirmation
        assert event.data["result"]["payment_id"] == payment_id
        assert event.say == f"Your payment has cleared; confirmation {confirmation}."
        await send_again(runtime, receiver, secret)
        assert [e.kind for e in await all_events(runtime, call)] == ["completion"]


async def test_a_webhook_processed_before_the_start_answer_is_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with scene(monkeypatch, delay_s=0, wait_s=5) as (runtime, server, receiver, _):
        correlate = runtime._webhooks.correlate

        async def late_correlate(*args: Any) -> None:
            # The start's answer is held until the webhook was stored and processed: then no
            # call could be found by its payment id yet.
            await asyncio.wait_for(receiver.accepted.wait(), 10)
            assert await runtime.drain_webhooks(10)
            await correlate(*args)

        monkeypatch.setattr(runtime._webhooks, "correlate", late_correlate)
        call = CallContext(id="c-lr-3", caller=CALLER)
        answer = await pay(runtime, call)
        assert answer.ok, answer.to_dict()
        confirmation = (await server.payment(answer.result["payment_id"]))["confirmation_number"]
        assert answer.result["confirmation_number"] == confirmation
        assert answer.meta["completed_by"] == "webhook"
        assert answer.say == f"Your payment has cleared; confirmation {confirmation}."
        # Its state change is made by the tool that took it.
        assert runtime.call_context(call).state["last_payment"] == confirmation
        assert [e.kind for e in await all_events(runtime, call)] == []
        [kept] = await runtime.unmatched_webhooks()
        assert kept["reason"] == "no_call"


async def test_a_completion_whose_waiting_tool_died_still_reaches_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with scene(monkeypatch, delay_s=0.3, wait_s=0.5) as (runtime, server, _, _secret):
        correlate = runtime._webhooks.correlate

        async def dying_correlate(*args: Any) -> None:
            # The tool marked itself waiting and recorded its key, then its process died: no
            # one will take the completion inline, and its waiting mark lingers for a while.
            await correlate(*args)
            raise RuntimeError("the waiting tool died")

        monkeypatch.setattr(runtime._webhooks, "correlate", dying_correlate)
        call = CallContext(id="c-lr-dead", caller=CALLER)
        async with runtime.call_events(call) as events:
            with pytest.raises(RuntimeError, match="died"):
                await pay(runtime, call)
            # Processed again until the lingering mark expires (wait_s + 5 s): then spoken.
            event = await asyncio.wait_for(anext(events), 20)
        assert (event.kind, event.event) == ("completion", "payment.succeeded")
        payment_id = event.data["result"]["payment_id"]
        confirmation = (await server.payment(payment_id))["confirmation_number"]
        assert event.say == f"Your payment has cleared; confirmation {confirmation}."


@pytest.mark.parametrize("delay_s", [0.05, 1.5])
async def test_replicas_sharing_redis_deliver_the_completion_once(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, delay_s: float
) -> None:
    # The tool waits on one replica while another takes the webhook: inline when it comes in
    # time, else one completion event; never both.
    url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_key_prefix")
    stores = (RedisStore(url, prefix=prefix), RedisStore(url, prefix=prefix))
    async with scene(monkeypatch, delay_s, wait_s=0.5, stores=stores) as (runtime, server, *_):
        call = CallContext(id=f"c-lr-redis-{delay_s}", caller=CALLER)
        async with runtime.call_events(call) as events:
            answer = await pay(runtime, call)
            payment_id = answer.result["payment_id"]
            if delay_s > 0.5:
                assert answer.error is not None and answer.error.code == "pending"
                event = await asyncio.wait_for(anext(events), 10)
                got = event.data["result"]["confirmation_number"]
            else:
                assert answer.ok, answer.to_dict()
                got = answer.result["confirmation_number"]
        assert got == (await server.payment(payment_id))["confirmation_number"]
        kinds = [e.kind for e in await all_events(runtime, call)]
        assert kinds == ([] if answer.ok else ["completion"])


@pytest.mark.parametrize(
    ("completion", "where", "words"),
    [
        ("{webhook: billing, event: payment.succeeded, match: data.payment_id, wait_s: 8}",
         "completion.wait_s", "at most the tool's budget_s (6)"),
        ("{webhook: stripe, event: payment.succeeded, match: data.payment_id, wait_s: 2}",
         "completion", "unknown webhook source 'stripe'"),
        ("{webhook: billing, event: payment.failed, match: data.payment_id, wait_s: 2}",
         "completion.event", "'payment.failed' rule"),
        ("{webhook: billing, event: payment.succeeded, match: data.payment_id, wait_s: 2, "
         "key: order_id}", "completion", "key 'order_id' is not in correlate"),
        ("{webhook: billing, event: payment.succeeded, match: 'data.[', wait_s: 2}",
         "completion.match", "invalid JMESPath"),
    ],
)  # fmt: skip
def test_a_completion_is_checked(completion: str, where: str, words: str) -> None:
    env = {"BILLING_API_KEY": "k", "BILLING_WEBHOOK_SECRET": new_secret()}
    with pytest.raises(ConfigErrors) as raised:
        load_config_text(config_text(completion), EXAMPLE, env=env)
    found = [(e.location, e.message) for e in raised.value.errors]
    assert any(
        loc == f"tools.create_payment_async.{where}" and words in msg for loc, msg in found
    ), found


def test_a_completion_needs_correlate() -> None:
    text = config_text(
        "{webhook: billing, event: payment.succeeded, match: data.payment_id, wait_s: 2}"
    ).replace("    correlate: {payment_id: payment_id}\n", "")
    env = {"BILLING_API_KEY": "k", "BILLING_WEBHOOK_SECRET": new_secret()}
    with pytest.raises(ConfigErrors) as raised:
        load_config_text(text, EXAMPLE, env=env)
    assert any("needs `correlate`" in e.message for e in raised.value.errors)
    assert json.dumps([e.location for e in raised.value.errors])
