"""The idempotency ledger: a write asked twice is sent once, whoever asks and however."""

from __future__ import annotations

import asyncio
import itertools

from patchbay import CallContext
from patchbay.http._types import Request, Response
from patchbay.observe import MemorySink
from patchbay.policies._base import Exchange, chain
from patchbay.policies._idempotency import IdempotencyPolicy
from patchbay.state import MemoryStore

from .support import (
    Answer,
    FakeTransport,
    exchange_for,
    json_response,
    make_config,
    make_runtime,
    ok,
    refused,
    request_for,
    reset,
    status,
)

PAY = {"invoice_id": "inv_1", "amount": 100}
_numbers = itertools.count(1)


async def charge(request: Request) -> Response:
    """An upstream that ignores idempotency keys: every request is a new charge."""
    return json_response(201, {"status": "completed", "confirmation_number": next(_numbers)})


def slow(answer: Answer, seconds: float) -> Answer:
    async def delayed(request: Request) -> Response:
        await asyncio.sleep(seconds)
        return await answer(request)

    return delayed


async def test_a_double_call_is_one_request_with_one_result() -> None:
    transport, sink = FakeTransport(charge), MemorySink()
    async with make_runtime(make_config(), transport, sink=sink) as rt:
        first = await rt.call_tool("pay", PAY, "c-1")
        second = await rt.call_tool("pay", PAY, "c-1")
    assert first.ok and second.ok
    assert second.result == first.result
    assert second.meta["deduplicated"] is True and "deduplicated" not in first.meta
    assert second.meta["attempts"] == 0
    assert second.meta["idempotency_key"] == "call_c-1_invoice_inv_1"
    assert len(transport.sent) == 1
    assert [e.outcome for e in sink.of_kind("policy")] == ["deduplicated"]


async def test_a_duplicate_in_flight_waits_for_the_first() -> None:
    transport = FakeTransport(slow(charge, 0.1))
    async with make_runtime(make_config(), transport) as rt:
        results = await asyncio.gather(*(rt.call_tool("pay", PAY, "c-1") for _ in range(5)))
    assert len(transport.sent) == 1
    assert all(r.ok and r.result == results[0].result for r in results)
    assert sum(1 for r in results if r.meta.get("deduplicated")) == 4


async def test_replicas_sharing_a_store_send_once() -> None:
    store = MemoryStore()
    one, two = FakeTransport(slow(charge, 0.05)), FakeTransport(slow(charge, 0.05))
    config = make_config()
    async with (
        make_runtime(config, one, store=store) as a,
        make_runtime(config, two, store=store) as b,
    ):
        first, second = await asyncio.gather(
            a.call_tool("pay", PAY, "c-1"), b.call_tool("pay", PAY, "c-1")
        )
    assert len(one.sent) + len(two.sent) == 1
    assert first.result == second.result


async def test_a_refused_connection_releases_the_key() -> None:
    transport = FakeTransport(refused)
    async with make_runtime(make_config(), transport) as rt:
        failed = await rt.call_tool("pay", PAY, "c-1")
        transport.answer = charge
        retried = await rt.call_tool("pay", PAY, "c-1")
        again = await rt.call_tool("pay", PAY, "c-1")
    # Nothing was sent: a failure, and the same key may go again.
    assert failed.error is not None and failed.error.code == "upstream_unavailable"
    assert failed.say == "I couldn't take the payment."
    assert retried.ok and not retried.meta.get("deduplicated")
    assert again.meta.get("deduplicated") and again.result == retried.result
    assert len(transport.sent) == 2


async def test_a_server_error_releases_the_key_for_the_confirmation() -> None:
    for failure in (status(503), reset):
        transport = FakeTransport(failure)
        async with make_runtime(make_config(), transport) as rt:
            unknown = await rt.call_tool("pay", PAY, "c-1")
            transport.answer = charge
            await rt.drain()  # the background confirmation resends with the same key
            recorded = await rt.background_outcome("c-1", "call_c-1_invoice_inv_1")
            again = await rt.call_tool("pay", PAY, "c-1")
        assert unknown.error is not None and unknown.error.code == "pending"
        assert unknown.say is None, "never the failed words: the charge may have happened"
        assert recorded is not None and recorded["outcome"] == "ok"
        assert again.ok and again.meta.get("deduplicated")
        assert again.result["confirmation_number"] == recorded["result"]["confirmation_number"]
        assert len(transport.sent) == 2


async def test_a_final_client_error_is_remembered() -> None:
    transport = FakeTransport(status(422))
    async with make_runtime(make_config(), transport) as rt:
        first = await rt.call_tool("pay", PAY, "c-1")
        second = await rt.call_tool("pay", PAY, "c-1")
    assert first.error is not None and second.error is not None
    assert first.error.code == second.error.code == "client_error"
    assert second.meta["deduplicated"]
    assert len(transport.sent) == 1


async def test_same_key_different_details_is_a_conflict_without_a_request() -> None:
    transport = FakeTransport(charge)
    async with make_runtime(make_config(), transport) as rt:
        first = await rt.call_tool("pay", PAY, "c-1")
        changed = await rt.call_tool("pay", {**PAY, "amount": 999}, "c-1")
    assert first.ok
    assert changed.error is not None and changed.error.code == "conflict"
    assert "same key but different details" in changed.error.message
    assert len(transport.sent) == 1


async def test_tenants_have_separate_ledgers() -> None:
    transport = FakeTransport(charge)
    config = make_config({"tenants": {"acme": {}, "globex": {}}})
    async with make_runtime(config, transport) as rt:
        for tenant in ("acme", "globex", "acme"):
            await rt.call_tool("pay", PAY, CallContext(id=f"c-{tenant}", tenant=tenant))
        await rt.call_tool("pay", PAY, CallContext(id="c-acme", tenant="globex"))
    assert len(transport.sent) == 3


async def test_a_duplicate_gives_up_within_its_budget_with_words() -> None:
    transport = FakeTransport(slow(charge, 0.6))
    config = make_config(tools={"pay": {"budget_s": 1}})
    quick = make_config(tools={"pay": {"budget_s": 0.2}})
    store = MemoryStore()
    async with (
        make_runtime(config, transport, store=store) as a,
        make_runtime(quick, FakeTransport(charge), store=store) as b,
    ):
        first = asyncio.create_task(a.call_tool("pay", PAY, "c-1"))
        await asyncio.sleep(0.05)
        waiting = await b.call_tool("pay", PAY, "c-1")
        assert (await first).ok
    assert waiting.error is not None and waiting.error.code == "pending"
    assert len(transport.sent) == 1


async def test_cancelled_before_sending_releases_the_claim() -> None:
    store = MemoryStore()
    policy = IdempotencyPolicy(store)
    config = make_config()
    never = asyncio.Event()

    async def stuck(request: Request, exchange: Exchange) -> Response:
        await never.wait()  # e.g. waiting for a rate-limit slot: nothing was sent
        raise AssertionError

    exchange = exchange_for(config, "pay")
    request = request_for(exchange, **PAY)
    task = asyncio.ensure_future(chain([policy], stuck)(request, exchange))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await policy.drain()

    transport = FakeTransport(ok)

    async def send(request: Request, exchange: Exchange) -> Response:
        return await transport.send(request, 1.0)

    again = exchange_for(config, "pay")
    response = await chain([policy], send)(request_for(again, **PAY), again)
    assert response.status == 200 and not again.deduplicated
    assert len(transport.sent) == 1
