"""Batches: several single-key operations sent to a store in one round trip where it can.

A store that can pipeline (Redis) has a `batch(ops)` method and `batches = True`; every other
store runs the same operations one after another through `run_batch`, with the same results.
Each operation stays a single-key command or script, so a batch works unchanged on Redis
Cluster (its pipeline sends each node its own commands, one round trip per node touched).
A batch is not a transaction: each operation is atomic, as it is alone, and they run in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from patchbay.state._protocol import StateError, StateStore, StateUnavailable


@dataclass(frozen=True, slots=True)
class Get:
    """`store.get(key)`."""

    key: str


@dataclass(frozen=True, slots=True)
class Incr:
    """`store.incr(key, amount, ttl_s)`."""

    key: str
    amount: int = 1
    ttl_s: float | None = None


@dataclass(frozen=True, slots=True)
class Set:
    """`store.set(key, value, ttl_s)`."""

    key: str
    value: bytes
    ttl_s: float | None = None


@dataclass(frozen=True, slots=True)
class SetIfAbsent:
    """`store.set_if_absent(key, value, ttl_s)`."""

    key: str
    value: bytes
    ttl_s: float | None = None


@dataclass(frozen=True, slots=True)
class AcquireRate:
    """`store.acquire_rate(key, rate_per_s, burst, max_wait_s)`."""

    key: str
    rate_per_s: float
    burst: int
    max_wait_s: float


Op = Get | Incr | Set | SetIfAbsent | AcquireRate

# What one operation gave: its value, or the error it raised (handed to whoever asked for it).
# An unreachable store fails the whole batch instead (StateUnavailable is raised).
Outcome = object


def batches(store: StateStore) -> bool:
    """Whether `store` sends a batch in fewer round trips than its operations one by one."""
    return bool(getattr(store, "batches", False))


async def run_batch(store: StateStore, ops: Sequence[Op]) -> list[Outcome]:
    """Run `ops` in order, in one round trip on a store that batches; one outcome per op."""
    if batches(store):
        found: list[Outcome] = await store.batch(ops)  # type: ignore[attr-defined]
        return found
    return await run_one_by_one(store, ops)


async def run_one_by_one(store: StateStore, ops: Sequence[Op]) -> list[Outcome]:
    """The batch as separate calls (stores that cannot pipeline, and retries of single ops)."""
    out: list[Outcome] = []
    for op in ops:
        try:
            out.append(await run_op(store, op))
        except StateUnavailable:
            raise
        except (StateError, ValueError, UnicodeError) as exc:
            out.append(exc)
    return out


async def run_op(store: StateStore, op: Op) -> Outcome:
    """One operation through the store's ordinary method."""
    if isinstance(op, Get):
        return await store.get(op.key)
    if isinstance(op, Incr):
        return await store.incr(op.key, op.amount, op.ttl_s)
    if isinstance(op, Set):
        await store.set(op.key, op.value, op.ttl_s)
        return None
    if isinstance(op, SetIfAbsent):
        return await store.set_if_absent(op.key, op.value, op.ttl_s)
    return await store.acquire_rate(op.key, op.rate_per_s, op.burst, op.max_wait_s)
