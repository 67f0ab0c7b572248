"""What only the memory store promises: an injectable clock and bounded growth."""

from __future__ import annotations

import pytest

from patchbay.state import MemoryStore


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_a_wait_of_exactly_max_wait_is_accepted() -> None:
    store = MemoryStore(clock=FakeClock(1.0))
    waits = [await store.acquire_rate("rl", 10, 1, max_wait_s=0.3) for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert waits[3] is not None and waits[3] > 0.3  # float noise the limiter must tolerate
    assert await store.acquire_rate("rl", 10, 1, max_wait_s=0.3) is None


async def test_ttls_follow_the_injected_clock() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    await store.set("k", b"v", ttl_s=60)
    clock.now += 59.9
    assert await store.get("k") == b"v"
    clock.now += 0.1
    assert await store.get("k") is None


async def test_expired_keys_nobody_reads_are_dropped() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for i in range(1000):
        await store.set_if_absent(f"idempotency:{i}", b"done", ttl_s=10)
    await store.set("kept", b"v", ttl_s=10)
    await store.set("kept", b"v")  # rewritten without a TTL: the stale expiry must not drop it
    clock.now += 11
    await store.set("trigger", b"v")
    assert await store.hgetall("nothing") == {}
    assert len(store._data) == 2  # "kept" and "trigger"


async def test_deleted_keys_with_long_ttls_do_not_pile_up() -> None:
    # A gateway ends thousands of calls a day, each with state kept for a day.
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for i in range(20_000):
        await store.set(f"call:{i}", b"{}", ttl_s=86400)
        await store.delete(f"call:{i}")
    await store.set("kept", b"v", ttl_s=10)
    assert len(store._expiries) < 2_100  # a few thousand stale entries at most, not 20,000
    clock.now += 10
    assert await store.get("kept") is None
