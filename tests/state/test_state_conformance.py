"""The StateStore conformance suite: every backend must pass every test here."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable

import pytest

from patchbay.state import StateStore, StateTypeError

Opener = Callable[[], StateStore]

TTL = 0.2
PAST_TTL = 0.4


async def test_backend_implements_the_protocol(store: StateStore) -> None:
    assert isinstance(store, StateStore)
    assert store.backend in {"memory", "sqlite", "redis", "fallback", "postgresql"}


async def test_get_set_delete(store: StateStore) -> None:
    assert await store.get("k") is None
    await store.set("k", b"one")
    assert await store.get("k") == b"one"
    await store.set("k", b"two")
    assert await store.get("k") == b"two"
    await store.delete("k")
    assert await store.get("k") is None
    await store.delete("never-there")


async def test_values_and_keys_are_kept_exactly(store: StateStore) -> None:
    every_byte = bytes(range(256))
    await store.set("tenant:acme/call 1:☎", every_byte)
    await store.set("empty", b"")
    assert await store.get("tenant:acme/call 1:☎") == every_byte
    assert await store.get("empty") == b""
    assert await store.get("tenant:acme/call 1:") is None


async def test_set_ttl_expires(store: StateStore) -> None:
    await store.set("k", b"v", ttl_s=TTL)
    assert await store.get("k") == b"v"
    await asyncio.sleep(PAST_TTL)
    assert await store.get("k") is None


async def test_set_without_ttl_removes_an_earlier_ttl(store: StateStore) -> None:
    await store.set("k", b"v", ttl_s=TTL)
    await store.set("k", b"w")
    await asyncio.sleep(PAST_TTL)
    assert await store.get("k") == b"w"


@pytest.mark.parametrize("ttl", [0, -1.0, math.nan, math.inf])
async def test_invalid_ttl_is_rejected(store: StateStore, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        await store.set("k", b"v", ttl_s=ttl)
    with pytest.raises(ValueError, match="ttl_s"):
        await store.set_if_absent("k", b"v", ttl_s=ttl)
    with pytest.raises(ValueError, match="ttl_s"):
        await store.compare_and_set("k", None, b"v", ttl_s=ttl)
    with pytest.raises(ValueError, match="ttl_s"):
        await store.incr("k", ttl_s=ttl)
    assert await store.get("k") is None


async def test_set_if_absent_claims_once(store: StateStore) -> None:
    assert await store.set_if_absent("claim", b"first") is True
    assert await store.set_if_absent("claim", b"second") is False
    assert await store.get("claim") == b"first"


async def test_set_if_absent_can_claim_again_after_expiry(store: StateStore) -> None:
    assert await store.set_if_absent("claim", b"first", ttl_s=TTL) is True
    assert await store.set_if_absent("claim", b"second", ttl_s=TTL) is False
    await asyncio.sleep(PAST_TTL)
    assert await store.set_if_absent("claim", b"third") is True
    assert await store.get("claim") == b"third"


async def test_set_if_absent_concurrent_claims_have_one_winner(store: StateStore) -> None:
    results = await asyncio.gather(
        *(store.set_if_absent("claim", b"%d" % i, ttl_s=30) for i in range(100))
    )
    assert results.count(True) == 1
    assert await store.get("claim") == b"%d" % results.index(True)


async def test_compare_and_set(store: StateStore) -> None:
    assert await store.compare_and_set("k", b"x", b"v1") is False  # absent, expected a value
    assert await store.get("k") is None
    assert await store.compare_and_set("k", None, b"v1") is True
    assert await store.compare_and_set("k", None, b"v2") is False  # present, expected absent
    assert await store.compare_and_set("k", b"wrong", b"v2") is False
    assert await store.get("k") == b"v1"
    assert await store.compare_and_set("k", b"v1", b"v2") is True
    assert await store.get("k") == b"v2"


async def test_compare_and_set_ttl(store: StateStore) -> None:
    await store.set("k", b"v1")
    assert await store.compare_and_set("k", b"v1", b"v2", ttl_s=TTL) is True
    await asyncio.sleep(PAST_TTL)
    assert await store.get("k") is None
    assert await store.compare_and_set("k", None, b"v3") is True


async def test_compare_and_set_race_has_one_winner(store: StateStore) -> None:
    await store.set("k", b"v0")
    results = await asyncio.gather(
        *(store.compare_and_set("k", b"v0", b"w%d" % i) for i in range(100))
    )
    assert results.count(True) == 1
    assert await store.get("k") == b"w%d" % results.index(True)


async def test_compare_and_set_loops_lose_no_update(store: StateStore) -> None:
    async def add_one() -> None:
        while True:
            current = await store.get("n")
            following = b"%d" % (int(current or b"0") + 1)
            if await store.compare_and_set("n", current, following):
                return

    await asyncio.gather(*(add_one() for _ in range(40)))
    assert await store.get("n") == b"40"


async def test_incr(store: StateStore) -> None:
    assert await store.incr("n") == 1
    assert await store.incr("n", 5) == 6
    assert await store.incr("n", -2) == 4
    assert await store.get("n") == b"4"
    await store.set("m", b"10")
    assert await store.incr("m") == 11
    assert await store.incr("negative", -3) == -3


async def test_incr_ttl_applies_only_when_the_key_is_created(store: StateStore) -> None:
    assert await store.incr("n", ttl_s=0.4) == 1
    await asyncio.sleep(0.25)
    assert await store.incr("n", ttl_s=0.4) == 2  # must not push the expiry out
    await asyncio.sleep(0.25)
    assert await store.get("n") is None
    assert await store.incr("n", ttl_s=0.4) == 1


async def test_incr_keeps_the_ttl_of_an_existing_key(store: StateStore) -> None:
    await store.set("n", b"1", ttl_s=TTL)
    assert await store.incr("n") == 2
    await asyncio.sleep(PAST_TTL)
    assert await store.get("n") is None


async def test_incr_concurrent_total_is_exact(store: StateStore) -> None:
    results = await asyncio.gather(*(store.incr("n", ttl_s=30) for _ in range(100)))
    assert sorted(results) == list(range(1, 101))
    assert await store.get("n") == b"100"


async def test_incr_on_something_else_than_an_integer_raises(store: StateStore) -> None:
    await store.set("text", b"not a number")
    with pytest.raises(StateTypeError):
        await store.incr("text")
    await store.hset("hash", "f", b"1")
    with pytest.raises(StateTypeError):
        await store.incr("hash")


class Elapsed:
    """Real time since creation; a wait the store computed shrinks by the time that has passed."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    def allows(self, wait: float | None, expected: float) -> bool:
        """True when `wait` is `expected` less at most the time elapsed (and clock rounding)."""
        slack = time.monotonic() - self._start + 0.002
        return wait is not None and expected - slack <= wait <= expected + 0.002


async def test_acquire_rate_burst_then_spacing(store: StateStore) -> None:
    elapsed = Elapsed()
    waits = [await store.acquire_rate("rl", 10, 3, max_wait_s=1) for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert elapsed.allows(waits[3], 0.1)
    assert elapsed.allows(waits[4], 0.2)


async def test_acquire_rate_refusal_reserves_nothing(store: StateStore) -> None:
    elapsed = Elapsed()
    assert await store.acquire_rate("rl", 2, 1, max_wait_s=0) == 0.0
    assert await store.acquire_rate("rl", 2, 1, max_wait_s=0) is None
    assert await store.acquire_rate("rl", 2, 1, max_wait_s=0.1) is None
    # Had the refusals reserved slots, this would be about 1.5 s.
    assert elapsed.allows(await store.acquire_rate("rl", 2, 1, max_wait_s=5), 0.5)


async def test_acquire_rate_frees_slots_as_time_passes(store: StateStore) -> None:
    assert await store.acquire_rate("rl", 4, 1, max_wait_s=0) == 0.0
    assert await store.acquire_rate("rl", 4, 1, max_wait_s=0) is None
    await asyncio.sleep(0.3)
    assert await store.acquire_rate("rl", 4, 1, max_wait_s=0) == 0.0


async def test_acquire_rate_concurrent_reservations_are_distinct(store: StateStore) -> None:
    elapsed = Elapsed()
    results = await asyncio.gather(
        *(store.acquire_rate("rl", 10, 4, max_wait_s=5) for _ in range(20))
    )
    waits = sorted(w for w in results if w is not None)
    assert len(waits) == 20
    assert waits[:4] == [0.0] * 4
    # Each reservation is one interval after the previous, less the time between the two.
    assert all(0 < b - a <= 0.1 + 0.002 for a, b in itertools.pairwise(waits[3:]))
    assert elapsed.allows(waits[-1], 1.6)


async def test_acquire_rate_keys_are_independent(store: StateStore) -> None:
    assert await store.acquire_rate("a", 1, 1, max_wait_s=0) == 0.0
    assert await store.acquire_rate("b", 1, 1, max_wait_s=0) == 0.0
    assert await store.acquire_rate("a", 1, 1, max_wait_s=0) is None


@pytest.mark.parametrize(
    ("rate", "burst", "max_wait"), [(0, 1, 0), (-1, 1, 0), (math.nan, 1, 0), (1, 0, 0), (1, 1, -1)]
)
async def test_acquire_rate_rejects_invalid_arguments(
    store: StateStore, rate: float, burst: int, max_wait: float
) -> None:
    with pytest.raises(ValueError):
        await store.acquire_rate("rl", rate, burst, max_wait)


async def test_hash_operations(store: StateStore) -> None:
    assert await store.hget("h", "f") is None
    assert await store.hgetall("h") == {}
    await store.hset("h", "a", b"1")
    await store.hset("h", "b", bytes(range(256)))
    await store.hset("h", "a", b"2")
    assert await store.hget("h", "a") == b"2"
    assert await store.hget("h", "missing") is None
    assert await store.hgetall("h") == {"a": b"2", "b": bytes(range(256))}
    await store.hdel("h", "a")
    await store.hdel("h", "missing")
    await store.hdel("absent-hash", "a")
    assert await store.hgetall("h") == {"b": bytes(range(256))}


async def test_hash_disappears_with_its_last_field(store: StateStore) -> None:
    await store.hset("h", "only", b"1")
    await store.hdel("h", "only")
    assert await store.hgetall("h") == {}
    assert await store.set_if_absent("h", b"value now") is True


async def test_delete_removes_a_hash(store: StateStore) -> None:
    await store.hset("h", "a", b"1")
    await store.delete("h")
    assert await store.hgetall("h") == {}
    await store.hset("h", "b", b"2")
    assert await store.hgetall("h") == {"b": b"2"}


async def test_set_replaces_a_hash(store: StateStore) -> None:
    await store.hset("h", "a", b"1")
    await store.set("h", b"plain")
    assert await store.get("h") == b"plain"
    await store.delete("h")
    await store.hset("h", "b", b"2")
    assert await store.hgetall("h") == {"b": b"2"}


async def test_concurrent_hset_keeps_every_field(store: StateStore) -> None:
    await asyncio.gather(*(store.hset("h", f"f{i}", b"%d" % i) for i in range(100)))
    assert await store.hgetall("h") == {f"f{i}": b"%d" % i for i in range(100)}


async def test_using_a_key_as_the_other_kind_raises(store: StateStore) -> None:
    await store.set("value", b"v")
    await store.hset("hash", "f", b"v")
    with pytest.raises(StateTypeError):
        await store.hset("value", "f", b"v")
    with pytest.raises(StateTypeError):
        await store.hget("value", "f")
    with pytest.raises(StateTypeError):
        await store.hgetall("value")
    with pytest.raises(StateTypeError):
        await store.get("hash")
    with pytest.raises(StateTypeError):
        await store.compare_and_set("hash", None, b"v")
    with pytest.raises(StateTypeError):
        await store.acquire_rate("hash", 1, 1, 0)
    assert await store.set_if_absent("hash", b"v") is False
    assert await store.get("value") == b"v"
    assert await store.hgetall("hash") == {"f": b"v"}


async def test_close_twice(store_opener: Opener) -> None:
    store = store_opener()
    await store.close()
    await store.close()


async def test_separate_instances_share_one_rate_limit(shared_opener: Opener) -> None:
    first, second = shared_opener(), shared_opener()
    assert first is not second
    elapsed = Elapsed()
    assert await first.acquire_rate("rl", 5, 2, max_wait_s=0) == 0.0
    assert await second.acquire_rate("rl", 5, 2, max_wait_s=0) == 0.0
    assert await first.acquire_rate("rl", 5, 2, max_wait_s=0) is None
    assert await second.acquire_rate("rl", 5, 2, max_wait_s=0) is None
    assert elapsed.allows(await second.acquire_rate("rl", 5, 2, max_wait_s=1), 0.2)


async def test_separate_instances_share_claims_counters_and_hashes(shared_opener: Opener) -> None:
    stores = [shared_opener() for _ in range(4)]
    claims = await asyncio.gather(
        *(s.set_if_absent("claim", b"x") for s in stores for _ in range(5))
    )
    assert claims.count(True) == 1
    totals = await asyncio.gather(*(s.incr("n", 2) for s in stores for _ in range(25)))
    assert max(totals) == 200
    await stores[0].hset("h", "a", b"1")
    await stores[1].hset("h", "b", b"2")
    assert await stores[2].hgetall("h") == {"a": b"1", "b": b"2"}
    await stores[3].delete("h")
    assert await stores[0].hgetall("h") == {}
