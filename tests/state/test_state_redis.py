"""What only the Redis store promises: key prefixes, script reloading, unreachability."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis

from patchbay.state import RedisStore, StateUnavailable

pytestmark = pytest.mark.redis


@pytest.fixture
async def store(redis_url: str, redis_key_prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url, prefix=redis_key_prefix)
    yield store
    await store.close()


@pytest.fixture
def raw(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


async def test_every_key_carries_the_prefix(
    store: RedisStore, raw: redis.Redis, redis_key_prefix: str
) -> None:
    await store.set("v", b"1")
    await store.incr("n", ttl_s=10)
    await store.hset("h", "f", b"1")
    await store.acquire_rate("rl", 1, 1, 0)
    await store.compare_and_set("c", None, b"1", ttl_s=10)
    keys = sorted(k.decode() for k in raw.scan_iter(match=redis_key_prefix + "*"))
    assert keys == [redis_key_prefix + k for k in ("c", "h", "n", "rl", "v")]
    assert 0 < raw.pttl(redis_key_prefix + "n") <= 10_000
    assert 0 < raw.pttl(redis_key_prefix + "rl") <= 1_000


async def test_scripts_are_loaded_again_after_a_script_flush(
    store: RedisStore, raw: redis.Redis
) -> None:
    assert await store.compare_and_set("c", None, b"1") is True
    raw.script_flush()
    assert await store.compare_and_set("c", b"1", b"2") is True
    assert await store.incr("n", ttl_s=5) == 1
    assert await store.acquire_rate("rl", 1, 1, 0) == 0.0


async def test_an_unreachable_server_raises_state_unavailable_quickly(down_redis_url: str) -> None:
    store = RedisStore(down_redis_url)
    started = time.monotonic()
    try:
        with pytest.raises(StateUnavailable):
            await store.get("k")
        with pytest.raises(StateUnavailable):
            await store.acquire_rate("rl", 1, 1, 0)
    finally:
        await store.close()
    assert time.monotonic() - started < 2


def test_repr_hides_the_password() -> None:
    store = RedisStore("redis://user:s3cret@127.0.0.1:6379/0")
    assert "s3cret" not in repr(store)
    assert "user:***@127.0.0.1:6379" in repr(store)


async def test_a_connection_slow_to_close_does_not_fail_the_close(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore(redis_url, connect_timeout_s=0.25)
    await store.set("k", b"1")
    pool_close = store._redis.aclose

    async def slow_close() -> None:
        await pool_close()  # the sockets do close...
        # ...but redis-py gave up waiting for one within the connect timeout
        raise redis.exceptions.TimeoutError("Timed out closing connection after 0.25")

    monkeypatch.setattr(store._redis, "aclose", slow_close)
    await store.close()  # a shutdown goes on
    await store.close()  # and a second close is still nothing
