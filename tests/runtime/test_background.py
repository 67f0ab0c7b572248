"""`mode: background`: answer at once, write through the durable outbox, report the outcome."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from patchbay import CallContext, ToolRuntime
from patchbay._errors import ConfigErrors
from patchbay.cli import app
from patchbay.observe import MemorySink
from patchbay.spec import load_config_text
from patchbay.testing import BillingServer, Fault, FaultProxy

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "billing"
PAY_1001 = {"invoice_id": "inv_1001", "amount": 24700, "payment_method_id": "pm_card_visa4242"}
ACCEPTED = "I've started the payment; you'll get a confirmation shortly."

CONFIG = """
version: 1
state: %(state)s
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
    say: {accepted: "%(accepted)s"}
"""


def _runtime(
    env: dict[str, str],
    sink: MemorySink | None = None,
    state: str = "memory",
    *,
    worker: bool = True,
) -> ToolRuntime:
    text = CONFIG % {"state": state, "accepted": ACCEPTED}
    config = load_config_text(text, base_dir=EXAMPLE_DIR, env=env)
    return ToolRuntime(config, sinks=[sink] if sink else [], background_worker=worker)


async def _looked_up(rt: ToolRuntime, call_id: str) -> CallContext:
    call = CallContext(id=call_id)
    assert (await rt.call_tool("lookup_customer_invoices", {"phone": "+15551234567"}, call)).ok
    return call


def _posts(proxy: FaultProxy) -> int:
    return proxy.stats().by_path.get("POST /payments", 0)


async def test_accepted_at_once_then_paid_once_with_an_event(
    env: dict[str, str], proxy: FaultProxy, billing: BillingServer
) -> None:
    sink = MemorySink()
    async with _runtime(env, sink) as rt:
        call = await _looked_up(rt, "c-bg")
        proxy.add(Fault("slow", method="POST", delay_s=0.3))
        started = time.monotonic()
        result = await rt.call_tool("create_payment", PAY_1001, call)
        assert time.monotonic() - started < 0.05, "the caller does not wait for the write"
        assert result.ok, result.to_dict()
        assert result.result["status"] == "accepted"
        reference = result.result["reference"]
        assert result.say == ACCEPTED
        await rt.drain()
        outcome = await rt.background_outcome("c-bg", reference)
        assert await rt.pending_background() == []
    ledger = await billing.ledger()
    assert ledger["charges_by_invoice"] == {"inv_1001": 1}
    assert outcome is not None and outcome["ok"] is True
    assert outcome["result"] == {
        "confirmation_number": ledger["payments"][0]["confirmation_number"]
    }
    events = [e for e in sink.of_kind("background") if e.extra.get("source") == "outbox"]
    assert [(e.call_id, e.outcome, e.extra["reference"]) for e in events] == [
        ("c-bg", "ok", reference)
    ]


async def test_failures_are_retried_from_the_outbox(
    env: dict[str, str], proxy: FaultProxy, billing: BillingServer
) -> None:
    sink = MemorySink()
    async with _runtime(env, sink) as rt:
        call = await _looked_up(rt, "c-retry")
        # One outbox attempt spends three requests; the fourth 503 fails the second attempt's
        # first request, which its own retry then gets past.
        proxy.add(Fault("status", status=503, method="POST", times=4))
        result = await rt.call_tool("create_payment", PAY_1001, call)
        assert result.ok
        await rt.drain()
        while await rt.pending_background():  # the retry waits for its backoff
            await rt.drain()
    assert (await billing.ledger())["charges_by_invoice"] == {"inv_1001": 1}
    assert _posts(proxy) == 5
    done = [e for e in sink.of_kind("background") if e.extra.get("source") == "outbox"]
    assert [(e.outcome, e.extra["attempts"]) for e in done] == [("ok", 2)]


async def test_a_final_4xx_ends_the_entry(
    env: dict[str, str], proxy: FaultProxy, billing: BillingServer
) -> None:
    sink = MemorySink()
    async with _runtime(env, sink) as rt:
        call = await _looked_up(rt, "c-4xx")
        # Morgan's invoice, Jamie's customer id: the API answers 404 INV_404.
        wrong = {**PAY_1001, "invoice_id": "inv_2001", "amount": 100}
        result = await rt.call_tool("create_payment", wrong, call)
        assert result.ok and result.result["status"] == "accepted"
        await rt.drain()
        assert await rt.pending_background() == []
    assert (await billing.ledger())["charges_by_invoice"] == {}
    assert _posts(proxy) == 1, "a final 4xx is not retried"
    done = [e for e in sink.of_kind("background") if e.extra.get("source") == "outbox"]
    assert [e.outcome for e in done] == ["not_found"]


async def test_a_call_the_template_cannot_fill_is_refused_at_once(
    env: dict[str, str], proxy: FaultProxy
) -> None:
    async with _runtime(env) as rt:
        result = await rt.call_tool("create_payment", PAY_1001, "c-nostate")
        assert result.error is not None and result.error.code == "invalid_arguments"
        assert await rt.pending_background() == []


async def test_entries_survive_a_restart(
    env: dict[str, str], proxy: FaultProxy, billing: BillingServer, tmp_path: Path
) -> None:
    state = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    # A accepts the write, but its worker never runs (a replica that only accepts).
    async with _runtime(env, state=state, worker=False) as a:
        call = await _looked_up(a, "c-restart")
        result = await a.call_tool("create_payment", PAY_1001, call)
        assert result.ok
        assert len(await a.pending_background()) == 1
    assert _posts(proxy) == 0
    sink = MemorySink()
    async with _runtime(env, sink, state=state) as b:
        await b.drain()
        assert await b.pending_background() == []
    assert (await billing.ledger())["charges_by_invoice"] == {"inv_1001": 1}
    assert [e.outcome for e in sink.of_kind("background")] == ["ok"]


async def test_a_write_that_failed_before_a_restart_completes_once_after(
    env: dict[str, str], proxy: FaultProxy, billing: BillingServer, tmp_path: Path
) -> None:
    state = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    proxy.add(Fault("status", status=503, method="POST", times=3))
    async with _runtime(env, state=state) as a:
        call = await _looked_up(a, "c-crash")
        assert (await a.call_tool("create_payment", PAY_1001, call)).ok
        entry = None
        while entry is None or entry.attempts < 1:
            await asyncio.sleep(0.01)  # until the first try is stored back, waiting to resend
            entry = next(iter(await a.pending_background()), None)
        # 503 to a write: it may have been made, so it is pending and resent with its key.
        assert entry.attempts == 1 and entry.last_error == "pending"
        assert _posts(proxy) == 3
    async with _runtime(env, state=state) as b:
        while await b.pending_background():
            await b.drain()
    assert (await billing.ledger())["charges_by_invoice"] == {"inv_1001": 1}
    assert _posts(proxy) == 4


def test_a_background_post_needs_an_idempotency_key(env: dict[str, str]) -> None:
    text = CONFIG.replace(
        '    idempotency: {key: "call_{call.id}_invoice_{args.invoice_id}"}\n', ""
    ) % {"state": "memory", "accepted": ACCEPTED}
    with pytest.raises(ConfigErrors) as info:
        load_config_text(text, base_dir=EXAMPLE_DIR, env=env)
    assert [e.location for e in info.value.errors] == ["tools.create_payment.mode"]
    assert "idempotency key" in info.value.errors[0].message


async def test_drain_waits_for_a_write_in_its_backoff(
    env: dict[str, str], proxy: FaultProxy, billing: BillingServer
) -> None:
    async with _runtime(env) as rt:
        call = await _looked_up(rt, "c-drain")
        # The first outbox try spends its three requests; the entry then waits out a backoff.
        proxy.add(Fault("status", status=503, method="POST", times=3))
        assert (await rt.call_tool("create_payment", PAY_1001, call)).ok
        assert await rt.drain()
        assert await rt.pending_background() == []
        assert (await billing.ledger())["charges_by_invoice"] == {"inv_1001": 1}


@pytest.fixture
def cli_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, BillingServer]]:
    server = BillingServer(in_process=True).start()
    monkeypatch.setenv("BILLING_URL", server.url)
    monkeypatch.setenv("BILLING_API_KEY", server.api_key)
    data = yaml.safe_load(CONFIG % {"state": "memory", "accepted": ACCEPTED})
    del data["tools"]["lookup_customer_invoices"]  # the payment alone, as a one-shot command
    path = tmp_path / "patchbay.yaml"
    path.write_text(yaml.safe_dump(data))
    yield path, server
    server.stop()


def test_patchbay_call_sends_a_background_write_before_it_exits(
    cli_config: tuple[Path, BillingServer],
) -> None:
    path, server = cli_config
    state = json.dumps({"customer_id": "cus_8F2kLq"})
    args = ["call", "create_payment", "-c", str(path), "--args", json.dumps(PAY_1001)]
    result = CliRunner().invoke(app, [*args, "--state", state, "--call-id", "c-cli"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["ok"] and answer["result"]["status"] == "accepted"
    ledger = asyncio.run(server.ledger())
    assert ledger["charges_by_invoice"] == {"inv_1001": 1}, "the accepted write was sent"


def test_validate_warns_about_a_background_tool_on_a_memory_store(
    cli_config: tuple[Path, BillingServer],
) -> None:
    path, _ = cli_config
    result = CliRunner().invoke(app, ["validate", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert "warning: tools.create_payment.mode: mode: background on state: memory" in (
        result.output
    )
