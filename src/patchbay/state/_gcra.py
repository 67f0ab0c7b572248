"""GCRA (generic cell rate algorithm) with reservation, shared by the memory and SQLite stores.

The Redis store runs the same arithmetic in Lua (see `_redis.py`); keep the two in step.
The state is one number per key, the theoretical arrival time (TAT) of the next request.
Written by hand: limiter libraries (limits, aiolimiter) neither reserve a future slot for the
caller nor run one algorithm identically on memory, SQLite and a Redis script.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Float noise must not turn "exactly max_wait_s" into a refusal.
EPSILON_S = 1e-6


@dataclass(frozen=True, slots=True)
class GcraParams:
    """Validated limiter parameters in the form the algorithm uses."""

    interval_s: float
    tolerance_s: float
    max_wait_s: float


def gcra_params(rate_per_s: float, burst: int, max_wait_s: float) -> GcraParams:
    """Check the limiter arguments once and derive the emission interval and tolerance."""
    if not math.isfinite(rate_per_s) or rate_per_s <= 0:
        raise ValueError(f"rate_per_s must be a positive number, got {rate_per_s!r}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, got {burst!r}")
    if not math.isfinite(max_wait_s) or max_wait_s < 0:
        raise ValueError(f"max_wait_s must be a number >= 0, got {max_wait_s!r}")
    interval = 1.0 / rate_per_s
    return GcraParams(interval, (burst - 1) * interval, float(max_wait_s))


def gcra_reserve(tat: float | None, now: float, p: GcraParams) -> tuple[float, float] | None:
    """Return (new_tat, wait_s) for one reservation, or None when the wait exceeds max_wait_s."""
    base = now if tat is None or tat < now else tat
    wait = max(0.0, base - p.tolerance_s - now)
    if wait > p.max_wait_s + EPSILON_S:
        return None
    return base + p.interval_s, wait


def encode_tat(tat: float) -> bytes:
    """Store TATs as decimal text so every backend (and Lua) reads the same bytes."""
    return b"%.6f" % tat


def decode_tat(raw: bytes | None) -> float | None:
    """Read a stored TAT; unreadable bytes count as no state rather than an error."""
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None
