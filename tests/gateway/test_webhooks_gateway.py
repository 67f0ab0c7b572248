"""`POST /webhooks/{source}` on the gateway, and a webhook the billing service itself sends."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn
from standardwebhooks import Webhook

from patchbay import CallContext, ToolRuntime
from patchbay.gateway import create_app
from patchbay.runtime._callevents import CallEvents
from patchbay.spec import load_config_text
from patchbay.state import PostgresStore, RedisStore, SQLiteStore, StateStore
from patchbay.testing import BillingServer

from .gateway_support import TOKEN, bearer

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = REPO / "examples" / "billing"
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()

CONFIG = """
version: 1
state: %(state)s
gateway:
  auth: {bearer: env:WH_GATEWAY_TOKEN}
integrations:
  billing:
    base_url: %(billing)s
    auth: {type: api_key, header: X-API-Key, secret: env:BILLING_API_KEY}
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
webhooks:
  billing:
    verify: {scheme: standard, secret: env:BILLING_WEBHOOK_SECRET}
    max_body_bytes: 4096
    on:
      payment.succeeded:
        call: {correlate: data.payment_id}
        state: {confirmation: data.confirmation_number}
        say: "Your payment has cleared; confirmation {data.confirmation_number}."
      note:
        call: {id: data.call_id}
        say: "Note {data.n}."
"""


def signed(
    payload: Any, msg_id: str | None = None, secret: str = SECRET
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    msg_id = msg_id or "msg_" + secrets.token_hex(8)
    now = datetime.now(tz=UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body.decode()),
        "content-type": "application/json",
    }, body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("WH_GATEWAY_TOKEN", TOKEN)
    monkeypatch.setenv("BILLING_API_KEY", "demo-key")


@asynccontextmanager
async def gateway(rt: ToolRuntime, port: int) -> AsyncIterator[str]:
    config = uvicorn.Config(create_app(rt), port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def post(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes
) -> Any:
    async with session.post(url, data=body, headers=headers) as answer:
        assert answer.content_type == "application/json"
        return answer.status, json.loads(await answer.read())


async def test_the_door_of_webhooks() -> None:
    cfg = load_config_text(CONFIG % {"state": "memory", "billing": "http://127.0.0.1:9"})
    async with ToolRuntime(cfg, sinks=[]) as rt, gateway(rt, free_port()) as url:
        await rt.start_call("c-1")
        async with aiohttp.ClientSession() as session:
            hook = url + "/webhooks/billing"
            # no bearer token: the signature is the credential
            status, answer = await post(
                session, hook, *signed({"type": "note", "data": {"call_id": "c-1", "n": 1}})
            )
            assert (status, answer["ok"]) == (200, True)
            headers, body = signed({"type": "note", "data": {"call_id": "c-1", "n": 2}})
            forged = {**headers, "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}
            status, answer = await post(session, hook, forged, body)
            assert status == 401 and set(answer) == {"error"}
            assert "signature" in answer["error"]["message"] and SECRET not in json.dumps(answer)
            # a bearer token does not stand in for a signature
            status, _ = await post(session, hook, {**forged, **bearer()}, body)
            assert status == 401
            assert (await post(session, url + "/webhooks/other", headers, body))[0] == 404
            big_headers, big = signed({"type": "note", "pad": "x" * 5000})
            status, answer = await post(session, hook, big_headers, big)
            assert status == 413 and answer["error"]["code"] == "payload_too_large"
            status, answer = await post(session, hook, headers, body)
            assert (status, answer["duplicate"]) == (200, False)
            status, answer = await post(session, hook, headers, body)
            assert (status, answer["duplicate"]) == (200, True)
        assert await rt.drain_webhooks(5)
        stream = rt.call_events("c-1")
        says = [(await asyncio.wait_for(anext(stream), 5)).say for _ in range(2)]
        await stream.aclose()
        assert says == ["Note 1.", "Note 2."]


async def test_the_billing_service_webhook_reaches_the_live_call() -> None:
    port = free_port()
    hook = f"http://127.0.0.1:{port}/webhooks/billing"
    async with BillingServer(
        in_process=True, webhook_url=hook, webhook_secret=SECRET, webhook_delay_s=0.1
    ) as billing:
        cfg = load_config_text(CONFIG % {"state": "memory", "billing": billing.url})
        async with ToolRuntime(cfg, sinks=[]) as rt, gateway(rt, port):
            call = CallContext(id="c-pay", state={"customer_id": "cus_8F2kLq"})
            await rt.start_call(call)
            stream = rt.call_events("c-pay")
            args = {"invoice_id": "inv_1001", "amount": 24700, "payment_method_id": "pm_1"}
            result = await rt.call_tool("create_payment", args, call)
            assert result.ok and result.result["status"] == "processing"
            event = await asyncio.wait_for(anext(stream), 10)
            await stream.aclose()
            confirmation = event.data["confirmation"]
            assert confirmation.startswith("PAY-")
            assert event.say == f"Your payment has cleared; confirmation {confirmation}."
            assert rt.call_context(call).state["confirmation"] == confirmation


KILL_CONFIG = """
version: 1
state: %(state)s
gateway:
  auth: {open: true}
webhooks:
  billing:
    verify: {scheme: standard, secret: env:BILLING_WEBHOOK_SECRET}
    on:
      note:
        call: {id: data.call_id}
        say: "Note {data.n}."
"""


@pytest.fixture(params=["sqlite", "redis", "postgresql"])
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, StateStore]]:
    """The state URL `patchbay serve` uses, and a store of the test's own on the same data."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
        yield url, SQLiteStore(str(tmp_path / "state.db"))
    elif request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        yield url, PostgresStore(url)  # the gateway's own prefix; the test's ids are its own
    else:
        url = request.getfixturevalue("redis_url")
        yield url, RedisStore(url)  # the gateway's own prefix; the test's ids are its own


@pytest.fixture
def serve(tmp_path: Path, durable: tuple[str, StateStore]) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []
    path = tmp_path / "patchbay.yaml"
    path.write_text(KILL_CONFIG % {"state": durable[0]})

    def start() -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        command = [sys.executable, "-m", "patchbay.cli", "serve", "-c", str(path)]
        proc = subprocess.Popen(
            [*command, "--port", str(port), "--log-level", "warning"],
            env={**os.environ, "BILLING_WEBHOOK_SECRET": SECRET},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        return proc, f"http://127.0.0.1:{port}"

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def healthy(session: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            async with session.get(url + "/healthz") as answer:
                if answer.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        assert time.monotonic() < deadline, "the gateway did not start"
        await asyncio.sleep(0.05)


async def test_kill_9_after_acknowledging_loses_nothing_and_applies_nothing_twice(
    serve: Any, durable: tuple[str, StateStore]
) -> None:
    store = durable[1]
    run = secrets.token_hex(4)  # ids of this run: a shared Redis keeps other runs' keys
    call, lease, key = f"c-k9-{run}", f"msg_k9_{run}", f"billing:msg_k9_{run}"
    try:
        first, url = serve()
        async with aiohttp.ClientSession() as session:
            await healthy(session, url)
            async with session.post(url + f"/calls/{call}/start", json={}) as answer:
                assert answer.status == 200
            # Another worker holds this delivery's lease for a moment (as a replica would), so
            # the first gateway acknowledges it and is killed before processing it.
            await store.set_if_absent(f"inbox:lease:{key}", b"elsewhere", ttl_s=2.0)
            headers, body = signed({"type": "note", "data": {"call_id": call, "n": 9}}, lease)
            status, answer = await post(session, url + "/webhooks/billing", headers, body)
            assert (status, answer["duplicate"]) == (200, False)
            # and a burst of others, acknowledged just before the kill
            burst = [
                signed({"type": "note", "data": {"call_id": call, "n": n}}, f"msg_b{n}_{run}")
                for n in range(20)
            ]
            answers = await asyncio.gather(
                *(post(session, url + "/webhooks/billing", h, b) for h, b in burst)
            )
            assert all(status == 200 for status, _ in answers)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            assert await store.hget("inbox", key) is not None  # kept, not processed
            _second, url = serve()
            await healthy(session, url)
            # the sender retries what it never saw acknowledged, and some that it did
            for h, b in [(headers, body), *burst[:5]]:
                status, answer = await post(session, url + "/webhooks/billing", h, b)
                assert (status, answer["duplicate"]) == (200, True)
            deadline = time.monotonic() + 60
            refs = [key, *(f"billing:msg_b{n}_{run}" for n in range(20))]
            while any([await store.hget("inbox", ref) is not None for ref in refs]):
                assert time.monotonic() < deadline, "the new gateway did not process the inbox"
                await asyncio.sleep(0.1)
        events = await CallEvents(store).stored(call, None)
        says = sorted(e.say or "" for e in events)
        assert says == sorted(["Note 9.", *(f"Note {n}." for n in range(20))])
    finally:
        await store.close()
