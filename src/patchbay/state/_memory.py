"""MemoryStore: the default backend, state of one process."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass

from patchbay.state._gcra import decode_tat, encode_tat, gcra_params, gcra_reserve
from patchbay.state._protocol import StateTypeError, check_ttl

_SLACK = 1024  # stale expiries tolerated before the heap is rebuilt

# Written by hand: a dict with a heap of expiries is all this needs, and the cache libraries
# (cachetools' TTLCache and friends) have one TTL per cache, not one per key.


@dataclass(slots=True)
class _Entry:
    value: bytes | dict[str, bytes]
    expires_at: float | None


class MemoryStore:
    """State held in this process; TTLs run on a monotonic clock and expire lazily.

    Every method finishes without awaiting, so each is atomic with respect to other
    coroutines on the event loop; the store is not meant to be shared across threads.
    """

    backend: str = "memory"

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._data: dict[str, _Entry] = {}
        # (expires_at, key); entries go stale when a key is rewritten, and the sweep skips them.
        self._expiries: list[tuple[float, str]] = []

    async def get(self, key: str) -> bytes | None:
        """Return the value at `key`, or None when it is absent or expired."""
        return self._value(key, self._clock())

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        """Store `value` at `key`, replacing whatever was there."""
        self._put(key, bytes(value), check_ttl(ttl_s), self._clock())

    async def delete(self, key: str) -> None:
        """Remove `key` (value or hash); absent keys are fine."""
        self._data.pop(key, None)

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        """Store `value` only if `key` is absent; True when this call claimed it."""
        ttl = check_ttl(ttl_s)
        now = self._clock()
        if self._live(key, now) is not None:
            return False
        self._put(key, bytes(value), ttl, now)
        return True

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes, ttl_s: float | None = None
    ) -> bool:
        """Store `value` only if the current value equals `expected` (None: key must be absent)."""
        ttl = check_ttl(ttl_s)
        now = self._clock()
        if self._value(key, now) != expected:
            return False
        self._put(key, bytes(value), ttl, now)
        return True

    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        """Add `amount` to the integer at `key` and return it; `ttl_s` applies only on creation."""
        ttl = check_ttl(ttl_s)
        now = self._clock()
        entry = self._live(key, now)
        if entry is None:
            self._put(key, b"%d" % amount, ttl, now)
            return amount
        if isinstance(entry.value, dict):
            raise StateTypeError(f"key {key!r} holds a hash, not an integer")
        total = _parse_int(key, entry.value) + amount
        entry.value = b"%d" % total
        return total

    async def acquire_rate(
        self, key: str, rate_per_s: float, burst: int, max_wait_s: float
    ) -> float | None:
        """Reserve a GCRA slot; the seconds to wait before sending, or None if beyond max_wait_s."""
        params = gcra_params(rate_per_s, burst, max_wait_s)
        now = self._clock()
        reserved = gcra_reserve(decode_tat(self._value(key, now)), now, params)
        if reserved is None:
            return None
        tat, wait = reserved
        self._put(key, encode_tat(tat), tat - now, now)
        return wait

    async def hset(self, key: str, field: str, value: bytes) -> None:
        """Store `value` under `field` of the hash at `key`."""
        now = self._clock()
        fields = self._hash(key, now)
        if fields is None:
            self._put(key, {field: bytes(value)}, None, now)
        else:
            fields[field] = bytes(value)

    async def hget(self, key: str, field: str) -> bytes | None:
        """Return one field of the hash at `key`, or None."""
        fields = self._hash(key, self._clock())
        return None if fields is None else fields.get(field)

    async def hgetall(self, key: str) -> dict[str, bytes]:
        """Return every field of the hash at `key` ({} when absent)."""
        fields = self._hash(key, self._clock())
        return {} if fields is None else dict(fields)

    async def hdel(self, key: str, field: str) -> None:
        """Remove one field; the hash disappears with its last field."""
        fields = self._hash(key, self._clock())
        if fields is None:
            return
        fields.pop(field, None)
        if not fields:
            del self._data[key]

    async def close(self) -> None:
        """Drop all state; calling it twice is fine."""
        self._data.clear()
        self._expiries.clear()

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._data.get(key)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= now:
            del self._data[key]
            return None
        return entry

    def _value(self, key: str, now: float) -> bytes | None:
        entry = self._live(key, now)
        if entry is None:
            return None
        if isinstance(entry.value, dict):
            raise StateTypeError(f"key {key!r} holds a hash, not a value")
        return entry.value

    def _hash(self, key: str, now: float) -> dict[str, bytes] | None:
        entry = self._live(key, now)
        if entry is None:
            return None
        if not isinstance(entry.value, dict):
            raise StateTypeError(f"key {key!r} holds a value, not a hash")
        return entry.value

    def _put(
        self, key: str, value: bytes | dict[str, bytes], ttl_s: float | None, now: float
    ) -> None:
        expires_at = None if ttl_s is None else now + ttl_s
        self._data[key] = _Entry(value, expires_at)
        if expires_at is not None:
            heapq.heappush(self._expiries, (expires_at, key))
            if len(self._expiries) > 2 * len(self._data) + _SLACK:
                self._compact()
        self._sweep(now)

    def _compact(self) -> None:
        # Deleted and rewritten keys leave their expiries behind: a gateway ending thousands of
        # calls a day would otherwise hold a day's worth of them. Rebuilt from the live keys.
        self._expiries = [
            (entry.expires_at, key)
            for key, entry in self._data.items()
            if entry.expires_at is not None
        ]
        heapq.heapify(self._expiries)

    def _sweep(self, now: float) -> None:
        # Lazy expiry alone would keep keys nobody reads again (one-off idempotency keys).
        heap = self._expiries
        while heap and heap[0][0] <= now:
            expires_at, key = heapq.heappop(heap)
            entry = self._data.get(key)
            if entry is not None and entry.expires_at == expires_at:
                del self._data[key]


def _parse_int(key: str, raw: bytes) -> int:
    try:
        return int(raw)
    except ValueError:
        raise StateTypeError(f"key {key!r} does not hold an integer") from None
