"""The StateStore protocol, the state layer's errors, and argument checks shared by backends."""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

from patchbay._errors import PatchbayError


class StateError(PatchbayError):
    """Base of the errors the state layer raises."""


class StateUnavailable(StateError):
    """The backend cannot be reached (connection refused, reset or timed out)."""


class StateTypeError(StateError, TypeError):
    """The key holds another kind of value than the operation needs (hash vs value, not an int)."""


@runtime_checkable
class StateStore(Protocol):
    """Async state shared by the policies: bytes values under str keys, optional TTLs in seconds.

    A key holds either a value (get/set/incr/acquire_rate) or a hash (hset/hget); using it as
    the other kind raises StateTypeError. `ttl_s=None` means no expiry, and `set` and
    `compare_and_set` replace any earlier expiry, as Redis SET does.
    """

    backend: str

    async def get(self, key: str) -> bytes | None:
        """Return the value at `key`, or None when it is absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        """Store `value` at `key`, replacing whatever was there."""
        ...

    async def delete(self, key: str) -> None:
        """Remove `key` (value or hash); absent keys are fine."""
        ...

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        """Store `value` only if `key` is absent; True when this call claimed it."""
        ...

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes, ttl_s: float | None = None
    ) -> bool:
        """Store `value` only if the current value equals `expected` (None: key must be absent)."""
        ...

    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        """Add `amount` to the integer at `key` and return it; `ttl_s` applies only on creation."""
        ...

    async def acquire_rate(
        self, key: str, rate_per_s: float, burst: int, max_wait_s: float
    ) -> float | None:
        """Reserve a GCRA slot; the seconds to wait before sending, or None if beyond max_wait_s."""
        ...

    async def hset(self, key: str, field: str, value: bytes) -> None:
        """Store `value` under `field` of the hash at `key`."""
        ...

    async def hget(self, key: str, field: str) -> bytes | None:
        """Return one field of the hash at `key`, or None."""
        ...

    async def hgetall(self, key: str) -> dict[str, bytes]:
        """Return every field of the hash at `key` ({} when absent)."""
        ...

    async def hdel(self, key: str, field: str) -> None:
        """Remove one field; the hash disappears with its last field."""
        ...

    async def close(self) -> None:
        """Release connections and threads; calling it twice is fine."""
        ...


def check_ttl(ttl_s: float | None) -> float | None:
    """Reject TTLs that no backend can honour the same way (zero, negative, NaN, infinite)."""
    if ttl_s is None:
        return None
    if not math.isfinite(ttl_s) or ttl_s <= 0:
        raise ValueError(f"ttl_s must be a positive number of seconds or None, got {ttl_s!r}")
    return float(ttl_s)
