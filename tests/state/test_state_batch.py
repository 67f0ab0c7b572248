"""Batches on every store: the same results as the operations one by one, in one round trip on
Redis (a single send on its connection), errors handed to the op that met them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection

from patchbay.state import RedisStore, StateStore, StateTypeError
from patchbay.state._batch import (
    AcquireRate,
    Get,
    Incr,
    Op,
    Set,
    SetIfAbsent,
    batches,
    run_batch,
    run_one_by_one,
)


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


async def test_a_batch_gives_what_the_operations_give_one_by_one(store: StateStore) -> None:
    await store.set("b:v", b"one")
    await store.hset("b:h", "f", b"x")
    ops: list[Op] = [
        Get("b:v"),
        Get("b:absent"),
        Incr("b:n", 2, ttl_s=60),
        Incr("b:n", 3),
        SetIfAbsent("b:claim", b"mine", ttl_s=60),
        SetIfAbsent("b:claim", b"theirs", ttl_s=60),
        Set("b:w", b"written", ttl_s=60),
        Incr("b:h"),  # a hash is not a number: this op's error, not the batch's
        AcquireRate("b:rate", 10.0, 1, 0.0),
        AcquireRate("b:rate", 10.0, 1, 0.0),  # the only slot is taken, no wait allowed
        AcquireRate("b:rate", 10.0, 1, 1.0),  # waits for the next slot
        Get("b:w"),
    ]
    out = await run_batch(store, ops)
    assert out[:7] == [b"one", None, 2, 5, True, False, None]
    assert isinstance(out[7], StateTypeError)
    assert out[8] == 0.0
    assert out[9] is None
    assert isinstance(out[10], float) and 0.0 < out[10] <= 0.1 + 1e-6
    assert out[11] == b"written"
    # And the store holds what the same operations leave one by one.
    assert await store.get("b:claim") == b"mine"
    assert await store.get("b:n") == b"5"
    again = await run_one_by_one(store, [Incr("b:n", -5), SetIfAbsent("b:claim", b"x")])
    assert again == [0, False]


async def test_an_empty_batch_asks_nothing(store: StateStore) -> None:
    assert await run_batch(store, []) == []


@pytest.mark.redis
async def test_a_redis_batch_is_one_round_trip(redis_url: str, redis_key_prefix: str) -> None:
    store = RedisStore(redis_url, prefix=redis_key_prefix)
    try:
        assert batches(store)
        ops: list[Op] = [Incr("q", 1, ttl_s=60), Get("brk"), AcquireRate("r", 100.0, 5, 1.0)]
        await run_batch(store, ops)  # loads the scripts once
        with counting_sends() as sends:
            out = await run_batch(store, ops)
        assert sends[0] == 1
        assert out[0] == 2 and out[1] is None and out[2] == 0.0
    finally:
        await store.close()


@pytest.mark.redis
async def test_a_redis_batch_survives_a_server_that_lost_its_scripts(
    redis_url: str, redis_key_prefix: str
) -> None:
    store = RedisStore(redis_url, prefix=redis_key_prefix)
    try:
        await run_batch(store, [Incr("n", 1, ttl_s=60)])
        raw = store.client
        await raw.script_flush()  # as after a restart
        ops: list[Op] = [Incr("n", 1, ttl_s=60), AcquireRate("r", 10.0, 2, 0.0)]
        out = await run_batch(store, ops)
        assert out == [2, 0.0]
        assert await store.get("n") == b"2"  # each op ran once
    finally:
        await store.close()
