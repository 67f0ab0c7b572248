"""On Redis, a tool call asks the store in at most two round trips, one before sending and one
after, and every policy still decides as it did asking one by one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection

from patchbay import CallContext
from patchbay.state import RedisStore
from patchbay.state._batch import AcquireRate, Op, Outcome
from patchbay.testing import Fault, FaultProxy

from .support import JAMIE, PAYMENT, RuntimeFactory, billing_yaml

pytestmark = pytest.mark.redis

POLICIES = {
    "breaker": {"failure_rate": 0.5, "window": 20, "min_calls": 5, "open_s": 30},
    "rate_limit": {"per_second": 1000, "burst": 100},
    "quota": {"per_day": 1_000_000},
}


class CountingRedis(RedisStore):
    """A RedisStore that counts rate-limit reservations, asked alone or in a batch."""

    reservations = 0

    async def acquire_rate(
        self, key: str, rate_per_s: float, burst: int, max_wait_s: float
    ) -> float | None:
        self.reservations += 1
        return await super().acquire_rate(key, rate_per_s, burst, max_wait_s)

    async def batch(self, ops: Sequence[Op]) -> list[Outcome]:
        self.reservations += sum(isinstance(op, AcquireRate) for op in ops)
        return await super().batch(ops)


@pytest.fixture
async def store(redis_url: str, redis_key_prefix: str) -> AsyncIterator[CountingRedis]:
    found = CountingRedis(redis_url, prefix=redis_key_prefix)
    yield found
    await found.close()


@contextmanager
def counting_sends() -> Iterator[list[int]]:
    """Count the sends of every redis-py connection: each is one round trip."""
    count = [0]
    original = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, *args: Any, **kw: Any) -> None:
        count[0] += 1
        await original(self, *args, **kw)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    try:
        yield count
    finally:
        AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


async def _settled(count: list[int]) -> int:
    """The count once writes sent on the side (a breaker's success) have gone too."""
    last = -1
    while count[0] != last:
        last = count[0]
        await asyncio.sleep(0.05)
    return count[0]


async def test_a_live_get_and_a_payment_take_two_round_trips_each(
    make_runtime: RuntimeFactory, store: CountingRedis
) -> None:
    rt = make_runtime(billing_yaml(POLICIES), store=store)
    call = CallContext(id="trips")
    await rt.start_call(call)
    for i in range(3):  # warm: connections opened, scripts loaded
        assert (await rt.call_tool("get_customer", {"customer_id": JAMIE}, call)).ok
        args = {**PAYMENT, "invoice_id": f"inv_{2001 + i}", "amount": 1}
        assert (await rt.call_tool("pay_invoice", args, "warm")).ok
    await asyncio.sleep(0.1)
    warm = store.reservations
    n = 10
    with counting_sends() as sends:
        for _ in range(n):
            assert (await rt.call_tool("get_customer", {"customer_id": JAMIE}, call)).ok
        gets = await _settled(sends)
    with counting_sends() as sends:
        for i in range(n):
            args = {**PAYMENT, "invoice_id": f"inv_{2001 + i}", "amount": 1}
            result = await rt.call_tool("pay_invoice", args, call)
            assert result.ok and not result.meta.get("deduplicated"), result.to_json()
        payments = await _settled(sends)
    # Before: quota, breaker, rate (and the claim); after: the ledger. A success's count goes
    # with the next request's batch: only the last call's goes on its own.
    assert gets <= n + 1, gets
    assert payments <= 2 * n + 1, payments
    assert store.reservations - warm == 2 * n  # one slot per request, none asked twice


async def test_a_retry_reserves_its_own_slot(
    make_runtime: RuntimeFactory, store: CountingRedis, proxy: FaultProxy
) -> None:
    retry = {"attempts": 2, "backoff_s": 0.001, "max_backoff_s": 0.001}
    rt = make_runtime(billing_yaml({**POLICIES, "retry": retry}), store=store)
    proxy.add(Fault("status", status=503, times=1))
    result = await rt.call_tool("get_customer", {"customer_id": JAMIE}, "retried")
    assert result.ok, result.to_json()
    assert result.meta["attempts"] == 2
    assert proxy.stats().total == 2
    assert store.reservations == 2  # the first asked ahead, the retry on its own


async def test_a_quota_refusal_gives_back_what_was_asked_ahead(
    make_runtime: RuntimeFactory, store: CountingRedis, proxy: FaultProxy
) -> None:
    text = billing_yaml(POLICIES, {"pay_invoice": {"quota": {"per_call": 1}}})
    rt = make_runtime(text, store=store)
    first = await rt.call_tool("pay_invoice", PAYMENT, "q-call")
    assert first.ok, first.to_json()
    second = await rt.call_tool("pay_invoice", {**PAYMENT, "invoice_id": "inv_2002"}, "q-call")
    assert second.error is not None and second.error.code == "quota_exceeded"
    assert proxy.stats().total == 1  # the refused payment sent nothing
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    # The day's count asked ahead for the refused call was given back ...
    assert await store.get(f"quota:billing:-:day:{day}") == b"1"
    # ... and its idempotency claim released: nothing pending stands in the ledger.
    raw = store.client
    pending = [
        key
        async for key in raw.scan_iter(match=f"{store.prefix}idem:*")
        if str(await raw.get(key)).startswith("b'pending")
    ]
    assert pending == []


async def test_an_open_breaker_reserves_no_slot(
    make_runtime: RuntimeFactory, store: CountingRedis, proxy: FaultProxy
) -> None:
    rt = make_runtime(billing_yaml(POLICIES), store=store)
    proxy.add(Fault("status", status=503))
    codes = []
    for i in range(8):
        result = await rt.call_tool("get_customer", {"customer_id": JAMIE}, f"o-{i}")
        codes.append(result.error.code if result.error else None)
    assert codes[-1] == "circuit_open", codes
    sent = proxy.stats().total
    before = store.reservations
    for i in range(5):
        result = await rt.call_tool("get_customer", {"customer_id": JAMIE}, f"p-{i}")
        assert result.error is not None and result.error.code == "circuit_open"
    assert proxy.stats().total == sent
    assert store.reservations == before  # refused by the open breaker before any slot
