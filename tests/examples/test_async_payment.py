"""Asynchronous payments: 202 at once, then a payment.succeeded webhook signed per Standard
Webhooks, retried until the receiver takes it; and the call that hears it cleared."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
import uvicorn
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from patchbay import CallContext, ToolRuntime
from patchbay.gateway import create_app
from patchbay.runtime import CallEvent
from patchbay.spec import GatewayAuth, GatewaySpec, load_config
from patchbay.testing import BillingServer

JAMIE = "cus_8F2kLq"
MORGAN = "cus_3Hd9Wm"
FAST = {"webhook_delay_s": 0.05, "webhook_backoff_s": 0.05}
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "billing"
Forward = Callable[[Mapping[str, str], bytes], Awaitable[tuple[int, Any]]]


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def payment(confirm: str | None = "async", invoice_id: str = "inv_1001") -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer_id": JAMIE,
        "invoice_id": invoice_id,
        "amount": 24700,
        "payment_method_id": "pm_card_visa4242",
    }
    if confirm is not None:
        body["confirm"] = confirm
    return body


class Receiver:
    """A webhook endpoint on loopback that answers the given statuses in turn, then 204; or,
    with `forward` set, hands each delivery on and answers what it says (a listed status
    overriding it, as when an answer is lost)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.got: list[tuple[dict[str, str], str]] = []
        self.accepted = asyncio.Event()
        self.forward: Forward | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.got.append((dict(request.headers), raw.decode()))
        status = 204
        if self.forward is not None:
            status, _ = await self.forward(dict(request.headers), raw)
        status = self.statuses.pop(0) if self.statuses else status
        if 200 <= status < 300:
            self.accepted.set()
        return web.Response(status=status)


@asynccontextmanager
async def receiving(statuses: list[int] | None = None) -> AsyncIterator[Receiver]:
    receiver = Receiver(statuses)
    app = web.Application()
    app.router.add_post("/hooks/billing", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    receiver.url = f"http://127.0.0.1:{port}/hooks/billing"
    try:
        yield receiver
    finally:
        await runner.cleanup()


@asynccontextmanager
async def billing(**kw: Any) -> AsyncIterator[tuple[BillingServer, aiohttp.ClientSession]]:
    async with (
        BillingServer(in_process=kw.pop("in_process", True), **kw) as server,
        aiohttp.ClientSession(base_url=server.url, headers=server.headers) as api,
    ):
        yield server, api


async def pay(
    api: aiohttp.ClientSession, body: dict[str, Any], key: str = "key-async-1"
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    async with api.post("/payments", json=body, headers={"Idempotency-Key": key}) as answer:
        return answer.status, await answer.json(), answer


async def cleared(server: BillingServer, payment_id: str) -> dict[str, Any]:
    """The payment once the service says it succeeded (bounded wait, not a speed check)."""
    for _ in range(500):
        found = await server.payment(payment_id)
        if found["status"] == "succeeded":
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"payment {payment_id} never cleared: {found}")


# --- the service ---


async def test_async_payment_answers_202_then_sends_a_signed_payment_succeeded() -> None:
    secret = new_secret()
    async with (
        receiving() as hook,
        billing(webhook_url=hook.url, webhook_secret=secret, **FAST) as (server, api),
    ):
        status, body, _ = await pay(api, payment())
        assert status == 202
        assert body["status"] == "processing"
        assert body["payment_id"].startswith("pay_")
        assert (body["invoice_id"], body["amount"]) == ("inv_1001", 24700)
        assert "confirmation_number" not in body
        await asyncio.wait_for(hook.accepted.wait(), 10)
        headers, raw = hook.got[0]
        event = Webhook(secret).verify(raw, headers)
        assert event["type"] == "payment.succeeded"
        data = event["data"]
        assert data["payment_id"] == body["payment_id"]
        assert (data["invoice_id"], data["amount"]) == ("inv_1001", 24700)
        assert data["confirmation_number"].startswith("PAY-")
        found = await cleared(server, body["payment_id"])
        assert found["confirmation_number"] == data["confirmation_number"]
        ledger = await server.ledger()
        assert ledger["charges_by_invoice"] == {"inv_1001": 1}
        with pytest.raises(WebhookVerificationError):
            Webhook(new_secret()).verify(raw, headers)


async def test_a_processing_payment_shows_no_confirmation_yet() -> None:
    async with billing(webhook_delay_s=30) as (server, api):
        status, body, _ = await pay(api, payment())
        assert status == 202
        found = await server.payment(body["payment_id"])
        assert found["status"] == "processing"
        assert "confirmation_number" not in found
        async with api.get("/payments/pay_unknown") as answer:
            assert answer.status == 404
            assert (await answer.json())["code"] == "PAY_404"


async def test_a_failing_receiver_gets_the_same_event_again_until_it_takes_it() -> None:
    secret = new_secret()
    async with (
        receiving([500, 503]) as hook,
        billing(webhook_url=hook.url, webhook_secret=secret, **FAST) as (server, api),
    ):
        _, body, _ = await pay(api, payment())
        await asyncio.wait_for(hook.accepted.wait(), 10)
        assert len(hook.got) == 3
        ids = {headers["webhook-id"] for headers, _ in hook.got}
        assert len(ids) == 1  # one event, three tries: receivers deduplicate by its id
        for headers, raw in hook.got:
            assert Webhook(secret).verify(raw, headers)["data"]["payment_id"] == body["payment_id"]
        [delivery] = await server.webhooks()
        assert delivery["attempts"] == [500, 503, 204]
        assert delivery["delivered"] is True
        assert delivery["id"] == ids.pop()


async def test_a_receiver_that_never_takes_it_gets_a_bounded_number_of_tries() -> None:
    async with (
        receiving([500] * 10) as hook,
        billing(webhook_url=hook.url, webhook_secret=new_secret(), webhook_attempts=3, **FAST) as (
            server,
            api,
        ),
    ):
        await pay(api, payment())
        for _ in range(500):
            deliveries = await server.webhooks()
            if deliveries and len(deliveries[0]["attempts"]) == 3:
                break
            await asyncio.sleep(0.02)
        assert deliveries[0]["attempts"] == [500, 500, 500]
        assert deliveries[0]["delivered"] is False
        assert len(hook.got) == 3  # the sender gave up: no fourth try is left in its loop


async def test_without_a_webhook_url_the_payment_clears_silently() -> None:
    async with receiving() as hook, billing(**FAST) as (server, api):
        status, body, _ = await pay(api, payment())
        assert status == 202
        found = await cleared(server, body["payment_id"])
        assert found["confirmation_number"].startswith("PAY-")
        assert await server.webhooks() == []
        assert hook.got == []


async def test_the_same_key_replays_the_202_without_a_second_charge_or_event() -> None:
    async with (
        receiving() as hook,
        billing(webhook_url=hook.url, webhook_secret=new_secret(), **FAST) as (server, api),
    ):
        first = await pay(api, payment())
        again = await pay(api, payment())
        assert again[0] == 202
        assert again[1] == first[1]
        assert again[2].headers["Idempotent-Replayed"] == "true"
        await cleared(server, first[1]["payment_id"])
        await asyncio.wait_for(hook.accepted.wait(), 10)
        third = await pay(api, payment())
        assert third[1] == first[1]
        assert len(await server.webhooks()) == 1
        assert (await server.ledger())["charges_by_invoice"] == {"inv_1001": 1}
        # The same key with the other confirmation mode is another body: refused, not charged.
        status, refused, _ = await pay(api, payment(confirm=None))
        assert (status, refused["code"]) == (409, "PAY_409_KEY_REUSE")


async def test_synchronous_payments_are_unchanged_and_bad_modes_are_refused() -> None:
    async with billing(**FAST) as (server, api):
        status, body, _ = await pay(api, payment(confirm="sync"), key="k-sync")
        assert status == 201
        assert body["status"] == "completed"
        assert body["confirmation_number"].startswith("PAY-")
        status, body, _ = await pay(api, payment(confirm="later"), key="k-bad")
        assert (status, body["code"]) == (400, "PAY_400_CONFIRM")
        assert (await server.ledger())["charges_by_invoice"] == {"inv_1001": 1}


async def test_the_service_as_a_process_signs_with_the_secret_from_its_environment() -> None:
    secret = new_secret()
    async with (
        receiving() as hook,
        billing(in_process=False, webhook_url=hook.url, webhook_secret=secret, **FAST) as (_, api),
    ):
        _, body, _ = await pay(api, payment())
        await asyncio.wait_for(hook.accepted.wait(), 20)
        headers, raw = hook.got[0]
        assert Webhook(secret).verify(raw, headers)["data"]["payment_id"] == body["payment_id"]


def test_a_webhook_url_without_a_proper_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        BillingServer(webhook_url="http://127.0.0.1:9/hooks")
    with pytest.raises(ValueError, match="whsec_"):
        BillingServer(webhook_url="http://127.0.0.1:9/hooks", webhook_secret="plain")


# --- a call that hears its payment clear (the runtime embedded in the agent) ---


@asynccontextmanager
async def async_example(
    monkeypatch: pytest.MonkeyPatch, statuses: list[int] | None = None
) -> AsyncIterator[tuple[ToolRuntime, BillingServer, Receiver]]:
    """The async example config's runtime, the billing API, and the agent's webhook endpoint
    handing deliveries to the runtime (`accept_webhook`)."""
    secret = new_secret()
    async with (
        receiving(statuses) as hook,
        billing(webhook_url=hook.url, webhook_secret=secret, **FAST) as (server, _),
    ):
        monkeypatch.setenv("BILLING_API_KEY", server.api_key)
        monkeypatch.setenv("BILLING_WEBHOOK_SECRET", secret)
        monkeypatch.delenv("PATCHBAY_STATE", raising=False)
        config = load_config(EXAMPLE / "async.yaml", env={"BILLING_URL": server.url})
        async with ToolRuntime(config) as runtime:

            async def forward(headers: Mapping[str, str], body: bytes) -> tuple[int, Any]:
                return await runtime.accept_webhook("billing", headers, body)

            hook.forward = forward
            yield runtime, server, hook


async def start_paying(runtime: ToolRuntime, call: CallContext) -> str:
    await runtime.start_call(call)
    found = await runtime.call_tool("lookup_customer_invoices", {"phone": call.caller}, call)
    assert found.ok, found.to_dict()
    invoice = found.result["invoices"][0]
    args = {"invoice_id": invoice["invoice_id"], "amount": invoice["amount"],
            "payment_method_id": "pm_card_mc5454"}  # fmt: skip
    started = await runtime.call_tool("create_payment_async", args, call)
    assert started.ok, started.to_dict()
    assert started.result["processing"] is True
    assert (started.result["invoice_id"], started.result["amount"]) == ("inv_2001", 1750)
    payment_id: str = started.result["payment_id"]
    return payment_id


async def test_the_caller_hears_the_payment_clear_with_its_confirmation_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with async_example(monkeypatch) as (runtime, server, hook):
        call = CallContext(id="c-async-1", caller="+15559876543")
        async with runtime.call_events(call) as events:
            payment_id = await start_paying(runtime, call)
            event = await asyncio.wait_for(anext(events), 10)
        confirmation = (await server.payment(payment_id))["confirmation_number"]
        assert confirmation.startswith("PAY-")
        assert (event.kind, event.event, event.call_id) == ("webhook", "payment.succeeded", call.id)
        assert event.say == f"Your payment has cleared; confirmation {confirmation}."
        assert event.data["last_payment"] == confirmation
        assert runtime.call_context(call).state["last_payment"] == confirmation
        assert len(hook.got) == 1
        assert (await server.ledger())["charges_by_invoice"] == {"inv_2001": 1}


async def test_a_delivery_sent_again_reaches_the_call_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # The runtime stores the first delivery, but its answer is lost (the sender sees 500): the
    # sender sends the same webhook-id again, and the caller must still hear it once.
    async with async_example(monkeypatch, statuses=[500]) as (runtime, _, hook):
        call = CallContext(id="c-async-2", caller="+15559876543")
        await start_paying(runtime, call)
        await asyncio.wait_for(hook.accepted.wait(), 10)
        assert len(hook.got) == 2
        assert hook.got[0][0]["webhook-id"] == hook.got[1][0]["webhook-id"]
        assert await runtime.drain_webhooks(10)
        await runtime.publish_call_event(call.id, tenant=None, kind="completion", event="marker")
        seen: list[CallEvent] = []
        async with runtime.call_events(call) as events:
            async for event in events:
                if event.event == "marker":
                    break
                seen.append(event)
        assert [e.event for e in seen] == ["payment.succeeded"]


def conversation() -> ModuleType:
    """The demo's scripted conversation, as `patchbay demo` loads it."""
    spec = importlib.util.spec_from_file_location(
        "billing_conversation", EXAMPLE / "conversation.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def test_the_demo_conversation_says_processing_then_cleared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with async_example(monkeypatch) as (runtime, server, _):
        call = CallContext(id="c-async-3", caller="+15559876543")
        await runtime.start_call(call)
        transcript = await conversation().play_async(runtime, call)
        spoken = [text for who, text in transcript.lines if who == "agent"]
        payment_id = transcript.results[-1].result["payment_id"]
        confirmation = (await server.payment(payment_id))["confirmation_number"]
        processing = next(i for i, t in enumerate(spoken) if "$17.50 is processing" in t)
        cleared = next(i for i, t in enumerate(spoken) if f"confirmation {confirmation}" in t)
        assert processing < cleared == len(spoken) - 1
        assert [e.event for e in transcript.events] == ["payment.succeeded"]


# --- the same through the gateway: the API posts to POST /webhooks/billing ---


@asynccontextmanager
async def serving(app: Any, sock: socket.socket) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on an already bound loopback socket, in this loop."""
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the gateway did not start")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def first_frame(stream: aiohttp.ClientResponse, kind: str) -> dict[str, Any]:
    """The data of the first Server-Sent Event of this kind (`event:` field) on the stream."""
    # Parsed by hand: three field names and a blank line are the whole of what is needed here.
    fields: dict[str, str] = {}
    async for raw in stream.content:
        line = raw.decode().rstrip("\r\n")
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
            continue
        if fields.get("event") == kind:
            found: dict[str, Any] = json.loads(fields["data"])
            return found
        fields = {}
    raise AssertionError(f"the stream ended without a {kind} event")


async def test_through_the_gateway_the_signed_webhook_reaches_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret, token = new_secret(), "gw-" + os.urandom(8).hex()
    # The gateway's port is known before the billing API starts: the API is told where to post.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    hooks = f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks/billing"
    async with billing(webhook_url=hooks, webhook_secret=secret, **FAST) as (server, _):
        monkeypatch.setenv("BILLING_API_KEY", server.api_key)
        monkeypatch.setenv("BILLING_WEBHOOK_SECRET", secret)
        monkeypatch.setenv("PB_ASYNC_TOKEN", token)
        monkeypatch.delenv("PATCHBAY_STATE", raising=False)
        config = load_config(EXAMPLE / "async.yaml", env={"BILLING_URL": server.url})
        auth = GatewayAuth(bearer="env:PB_ASYNC_TOKEN")
        config = config.model_copy(update={"gateway": GatewaySpec(auth=auth)})
        bearer = {"Authorization": f"Bearer {token}"}
        async with (
            ToolRuntime(config) as runtime,
            serving(create_app(runtime, config), sock) as url,
            aiohttp.ClientSession(base_url=url, headers=bearer) as gw,
        ):

            async def tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
                body = {"arguments": arguments, "call": {"id": "c-gw-1"}}
                async with gw.post(f"/tools/{name}", json=body) as answer:
                    found: dict[str, Any] = await answer.json()
                    assert answer.status == 200 and found["ok"], found
                    return found

            async with gw.post("/calls/c-gw-1/start", json={"caller": "+15559876543"}) as answer:
                assert answer.status == 200
            await tool("lookup_customer_invoices", {"phone": "+15559876543"})
            pay = {"invoice_id": "inv_2001", "amount": 1750}
            pay["payment_method_id"] = "pm_card_mc5454"
            started = await tool("create_payment_async", pay)
            # The agent's side of a hosted call: the call's events as Server-Sent Events.
            async with gw.get("/calls/c-gw-1/events") as stream:
                assert stream.status == 200
                assert stream.headers["Content-Type"].startswith("text/event-stream")
                frame = await asyncio.wait_for(first_frame(stream, "webhook"), 10)
        payment_id = started["result"]["payment_id"]
        confirmation = (await server.payment(payment_id))["confirmation_number"]
        assert frame["event"] == "payment.succeeded" and frame["call_id"] == "c-gw-1"
        assert frame["say"] == f"Your payment has cleared; confirmation {confirmation}."
        assert frame["data"]["last_payment"] == confirmation
        [delivery] = await server.webhooks()
        assert delivery["attempts"] == [200] and delivery["delivered"] is True
