"""FallbackStore: serve locally while the shared store is down, and go back when it returns."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis

from patchbay.state import FallbackStore, MemoryStore, RedisStore, StateUnavailable, open_store


class Switchable(MemoryStore):
    """A primary that can be taken down; counts the calls that reach it."""

    backend = "switchable"

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    def _reach(self) -> None:
        self.calls += 1
        if self.down:
            raise StateUnavailable("switched off")

    async def get(self, key: str) -> bytes | None:
        self._reach()
        return await super().get(key)

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        self._reach()
        await super().set(key, value, ttl_s)

    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        self._reach()
        return await super().incr(key, amount, ttl_s)


async def _until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_outage_serves_locally_and_probes_at_most_each_interval() -> None:
    primary = Switchable()
    store = FallbackStore(primary, MemoryStore(), probe_interval_s=0.2)
    try:
        await store.set("k", b"shared")
        assert (store.degraded, store.serving, primary.calls) == (False, "switchable", 1)
        primary.down = True
        assert await store.get("k") is None  # local state does not have it
        assert store.degraded and store.serving == "memory"
        for _ in range(50):
            await store.incr("n")
        assert primary.calls == 2  # the failing call only: no per-operation retries
        assert (store.outages, store.fallback_ops) == (1, 51)
        await asyncio.sleep(0.5)
        assert 3 <= primary.calls <= 5  # probes, one per interval
        primary.down = False
        await _until(lambda: not store.degraded, 1.0)
        assert await store.get("k") == b"shared"
        assert (store.outages, store.fallback_ops) == (1, 51)
    finally:
        await store.close()


async def test_each_outage_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    primary = Switchable()
    store = FallbackStore(primary, MemoryStore(), probe_interval_s=0.05)
    caplog.set_level(logging.INFO, logger="patchbay.state")
    try:
        for _ in range(2):
            primary.down = True
            await asyncio.gather(*(store.set("k", b"v") for _ in range(10)))
            primary.down = False
            await _until(lambda: not store.degraded, 1.0)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        recoveries = [r for r in caplog.records if r.levelno == logging.INFO]
        assert len(warnings) == 2 and len(recoveries) == 2
        assert "unreachable" in warnings[0].getMessage()
        assert store.outages == 2
    finally:
        await store.close()


async def test_unreachable_from_the_start(down_redis_url: str) -> None:
    store = FallbackStore(RedisStore(down_redis_url), MemoryStore())
    try:
        assert await store.set_if_absent("claim", b"1") is True
        assert await store.set_if_absent("claim", b"2") is False
        assert store.degraded
    finally:
        await store.close()


async def test_the_warning_hides_the_password(
    down_redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(down_redis_url.replace("redis://", "redis://user:s3cret@"))
    try:
        await store.get("k")
    finally:
        await store.close()
    assert caplog.records
    assert "s3cret" not in caplog.text


@pytest.mark.redis
async def test_redis_outage_mid_run(
    redis_server_factory: Callable[[], Any], caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_server_factory()
    raw = redis.Redis.from_url(server.url)
    store = FallbackStore(RedisStore(server.url, prefix="t:"), MemoryStore())
    caplog.set_level(logging.INFO, logger="patchbay.state")
    try:
        await store.set("before", b"1")
        assert raw.get("t:before") == b"1" and not store.degraded

        server.kill()
        assert await store.set_if_absent("claim", b"x", ttl_s=60) is True
        assert await store.incr("n") == 1
        assert await store.acquire_rate("rl", 10, 1, max_wait_s=1) == 0.0
        await store.hset("h", "f", b"v")
        assert await store.hgetall("h") == {"f": b"v"}
        assert store.degraded and store.outages == 1 and store.fallback_ops == 5
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "redis" in warnings[0].getMessage()

        server.start()  # same port, empty data
        await _until(lambda: not store.degraded, 5.0)
        await store.set("after", b"2")
        assert raw.get("t:after") == b"2"
        assert await store.incr("n") == 1  # Redis's own count: local state is not copied back
        assert store.outages == 1
    finally:
        await store.close()
        raw.close()
