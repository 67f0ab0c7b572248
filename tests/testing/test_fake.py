"""FakeTransport and FakeClock: a handler or declared tool run with scripted upstream answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from patchbay import Config, ToolRuntime, load_config
from patchbay.http import ConnectError, Request, Response
from patchbay.testing import FakeClock, FakeTransport, UnscriptedRequest

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "billing" / "patchbay.yaml"
JAMIE = {"status": 200, "data": {"customer": {"id": "cus_8F2kLq", "name": "Jamie Patel",
                                              "status": "active", "tier": "premium"}}}  # fmt: skip
PAY = {"invoice_id": "inv_1001", "amount": 24700, "payment_method_id": "pm_card_visa4242"}
PAID = {"status": "completed", "confirmation_number": "PAY-1", "invoice_id": "inv_1001",
        "amount": 24700}  # fmt: skip


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> Iterator[Config]:
    monkeypatch.setenv("BILLING_API_KEY", "k-test")
    yield load_config(CONFIG)


async def test_a_declared_tool_reads_its_scripted_answer(config: Config) -> None:
    fake = FakeTransport()
    fake.add("GET", "/customers/{customer_id}", json=JAMIE)
    async with ToolRuntime(config, transport=fake, sinks=[]) as runtime:
        result = await runtime.call_tool("get_customer", {"customer_id": "cus_8F2kLq"})
    assert result.ok, result.error
    assert result.result == {"customer_name": "Jamie Patel", "status": "active",
                             "account_tier": "premium"}  # fmt: skip
    [sent] = fake.requests
    assert sent.url.endswith("/customers/cus_8F2kLq")
    assert sent.headers["X-API-Key"] == "k-test"
    assert fake.calls("GET", "/customers/cus_8F2kLq") == [sent]  # a concrete path matches too
    assert fake.closed  # the runtime closed its transport


async def test_retries_and_retry_after_take_no_time(config: Config) -> None:
    fake = FakeTransport()
    fake.add("POST", "/payments", status=429, headers={"Retry-After": "2"}, times=1)
    fake.add("POST", "/payments", status=500, times=1)
    fake.add("POST", "/payments", status=201, json=PAID)
    clock = FakeClock()
    async with ToolRuntime(config, transport=fake, sleep=clock.sleep, sinks=[]) as runtime:
        ctx = runtime.call_context("c-1")
        ctx.state.update(customer_id="cus_8F2kLq", open_invoice_amount=24700)
        result = await runtime.call_tool("create_payment", PAY, ctx)
    assert result.ok, result.error
    assert result.meta["attempts"] == 3
    assert clock.sleeps[0] == 2.0 and len(clock.sleeps) == 2  # Retry-After, then a backoff
    assert clock.now == pytest.approx(sum(clock.sleeps))
    keys = {r.headers["Idempotency-Key"] for r in fake.calls("POST", "/payments")}
    assert keys == {"call_c-1_invoice_inv_1001"}  # every attempt with the same key
    assert fake.calls("POST", "/payments")[0].json["customer_id"] == "cus_8F2kLq"


async def test_network_failures_are_raised_as_scripted(config: Config) -> None:
    fake = FakeTransport()
    fake.add("GET", "/customers/{customer_id}", raises=TimeoutError(), times=1)
    fake.add("GET", "/customers/{customer_id}", raises=ConnectError("refused"), times=1)
    fake.add("GET", "/customers/{customer_id}", json=JAMIE)
    async with ToolRuntime(config, transport=fake, sleep=FakeClock().sleep, sinks=[]) as rt:
        result = await rt.call_tool("get_customer", {"customer_id": "cus_8F2kLq"})
    assert result.ok and result.meta["attempts"] == 3


async def test_an_answer_function_sees_the_request(config: Config) -> None:
    def answer(request: Request) -> Response:
        customer_id = request.url.rsplit("/", 1)[1]
        if customer_id != "cus_8F2kLq":
            return FakeTransport.response(404, json={"error": "no", "code": "CS_404"})
        return FakeTransport.response(200, json=JAMIE)

    async def slow_answer(request: Request) -> Response:
        return answer(request)

    for fn in (answer, slow_answer):
        fake = FakeTransport()
        fake.add("GET", "/customers/{customer_id}", answer=fn)
        async with ToolRuntime(config, transport=fake, sinks=[]) as runtime:
            found = await runtime.call_tool("get_customer", {"customer_id": "cus_8F2kLq"})
            missing = await runtime.call_tool("get_customer", {"customer_id": "cus_nobody"})
        assert found.ok
        assert missing.error is not None
        assert (missing.error.code, missing.error.message) == ("not_found", "customer not found")


async def test_a_handler_runs_against_scripted_answers(config: Config) -> None:
    fake = FakeTransport()
    fake.add("GET", "/customers/search", json=JAMIE)
    fake.add("GET", "/invoices", json=[{"id": "inv_1001", "amount": 24700,
                                         "due_date": "2026-03-01"}])  # fmt: skip
    async with ToolRuntime(config, transport=fake, sinks=[]) as runtime:
        result = await runtime.call_tool(
            "lookup_customer_invoices", {"email": "jamie.patel@example.com"}, "c-2"
        )
        state = runtime.call_context("c-2").state
    assert result.ok and result.result["invoice_count"] == 1
    assert state["customer_id"] == "cus_8F2kLq"
    invoices = fake.calls("GET", "/invoices")[0]
    assert dict(invoices.query) == {"customer_id": "cus_8F2kLq", "status": "open"}


async def test_an_unscripted_request_is_reported_not_answered(config: Config) -> None:
    fake = FakeTransport()
    async with ToolRuntime(config, transport=fake, sinks=[]) as runtime:
        result = await runtime.call_tool("get_customer", {"customer_id": "cus_8F2kLq"})
    assert not result.ok and result.error is not None and result.error.code == "internal"
    [missed] = fake.unscripted
    assert missed.path_template == "/customers/{customer_id}"
    with pytest.raises(UnscriptedRequest, match=r"GET /customers/cus_8F2kLq"):
        await fake.send(missed, 1.0)


def test_add_refuses_contradictions() -> None:
    fake = FakeTransport()
    with pytest.raises(ValueError, match="one of"):
        fake.add("GET", "/x", json={}, raises=TimeoutError())
    with pytest.raises(ValueError, match="times"):
        fake.add("GET", "/x", times=0)


async def test_fake_clock_advances_without_waiting() -> None:
    clock = FakeClock(start=100.0)
    await clock.sleep(3600)
    clock.advance(5)
    await clock.sleep(-1)  # a negative wait is no wait
    assert clock.now == 3705.0
    assert clock.sleeps == [3600, -1]
