"""SplitStore: limits, breakers and caches on a fast store; what must not be lost on a durable."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from patchbay.state._batch import Op, Outcome, batches, run_batch
from patchbay.state._protocol import StateStore

# The key namespaces (the text before the first ':' or '@') whose loss would lose or repeat a
# write or forget a call: the outbox and its leases, the idempotency ledger, call state, the
# outcomes of background writes, callback requests, the webhook inbox, and the event logs of
# calls (`callev`).
DURABLE_NAMESPACES = frozenset(
    {
        "outbox",
        "outbox-dead",
        "outbox-lease",
        "idem",
        "call",
        "outcome",
        "callbacks",
        "inbox",
        "callev",
        "corr",  # correlation keys that lead a webhook to its call
    }
)


def namespace(key: str) -> str:
    """The namespace of a store key: `idem:acme:pay:..` -> `idem`, `call@acme:c1` -> `call`."""
    cut = len(key)
    for mark in (":", "@"):
        at = key.find(mark)
        if 0 <= at < cut:
            cut = at
    return key[:cut]


class SplitStore:
    """Routes each key by its namespace: DURABLE_NAMESPACES to `durable`, the rest to `fast`."""

    backend: str = "split"

    def __init__(self, fast: StateStore, durable: StateStore) -> None:
        self.fast = fast
        self.durable = durable

    @property
    def batches(self) -> bool:
        """Whether either store sends a batch in one round trip."""
        return batches(self.fast) or batches(self.durable)

    async def batch(self, ops: Sequence[Op]) -> list[Outcome]:
        """Each store's share of `ops` as one batch of its own, fast store first.

        Ops keep their order within each store; a batch naming keys of both stores costs a
        round trip on each.
        """
        out: list[Outcome] = [None] * len(ops)
        for store in (self.fast, self.durable) if self.fast is not self.durable else (self.fast,):
            mine = [i for i, op in enumerate(ops) if self.store_for(op.key) is store]
            if mine:
                found = await run_batch(store, [ops[i] for i in mine])
                for i, outcome in zip(mine, found, strict=True):
                    out[i] = outcome
        return out

    def store_for(self, key: str) -> StateStore:
        """The store that holds `key`."""
        return self.durable if namespace(key) in DURABLE_NAMESPACES else self.fast

    async def get(self, key: str) -> bytes | None:
        return await self.store_for(key).get(key)

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        await self.store_for(key).set(key, value, ttl_s)

    async def delete(self, key: str) -> None:
        await self.store_for(key).delete(key)

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        return await self.store_for(key).set_if_absent(key, value, ttl_s)

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes, ttl_s: float | None = None
    ) -> bool:
        return await self.store_for(key).compare_and_set(key, expected, value, ttl_s)

    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        return await self.store_for(key).incr(key, amount, ttl_s)

    async def acquire_rate(
        self, key: str, rate_per_s: float, burst: int, max_wait_s: float
    ) -> float | None:
        return await self.store_for(key).acquire_rate(key, rate_per_s, burst, max_wait_s)

    async def hset(self, key: str, field: str, value: bytes) -> None:
        await self.store_for(key).hset(key, field, value)

    async def hget(self, key: str, field: str) -> bytes | None:
        return await self.store_for(key).hget(key, field)

    async def hgetall(self, key: str) -> dict[str, bytes]:
        return await self.store_for(key).hgetall(key)

    async def hdel(self, key: str, field: str) -> None:
        await self.store_for(key).hdel(key, field)

    async def close(self) -> None:
        """Close both stores (once each, even when they are the same object)."""
        stores = [self.fast] if self.fast is self.durable else [self.fast, self.durable]
        await asyncio.gather(*(store.close() for store in stores))
