"""FallbackStore: keep serving on local state while the shared store is unreachable."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from patchbay.state._batch import Op, Outcome, batches, run_batch
from patchbay.state._protocol import StateError, StateStore, StateUnavailable

_T = TypeVar("_T")

log = logging.getLogger("patchbay.state")

# Read by the probe; it never has to exist.
_PROBE_KEY = "state-probe"


class FallbackStore:
    """`primary` while it answers, `local` during an outage, `primary` again once a probe answers.

    State written locally during an outage stays local: it is not copied to the primary
    afterwards, so limits, breakers and caches are per replica until the primary returns.
    For metrics: `degraded` (serving locally now), `outages` (how many began) and
    `fallback_ops` (operations served locally).
    """

    backend: str = "fallback"

    def __init__(
        self, primary: StateStore, local: StateStore, *, probe_interval_s: float = 1.0
    ) -> None:
        self.primary = primary
        self.local = local
        self.outages = 0
        self.fallback_ops = 0
        self._probe_interval_s = probe_interval_s
        self._degraded = False
        self._outage_started = 0.0
        self._probe_task: asyncio.Task[None] | None = None

    @property
    def batches(self) -> bool:
        """Whether the shared store sends a batch in one round trip."""
        return batches(self.primary)

    async def batch(self, ops: Sequence[Op]) -> list[Outcome]:
        """Run `ops` in order on the store serving now (local for the whole batch in an outage)."""
        return await self._run(lambda s: run_batch(s, ops))

    @property
    def degraded(self) -> bool:
        """True while operations are served from local state."""
        return self._degraded

    @property
    def serving(self) -> str:
        """The backend name that serves operations right now."""
        return self.local.backend if self._degraded else self.primary.backend

    async def get(self, key: str) -> bytes | None:
        """Return the value at `key`, or None when it is absent or expired."""
        return await self._run(lambda s: s.get(key))

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        """Store `value` at `key`, replacing whatever was there."""
        await self._run(lambda s: s.set(key, value, ttl_s))

    async def delete(self, key: str) -> None:
        """Remove `key` (value or hash); absent keys are fine."""
        await self._run(lambda s: s.delete(key))

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        """Store `value` only if `key` is absent; True when this call claimed it."""
        return await self._run(lambda s: s.set_if_absent(key, value, ttl_s))

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes, ttl_s: float | None = None
    ) -> bool:
        """Store `value` only if the current value equals `expected` (None: key must be absent)."""
        return await self._run(lambda s: s.compare_and_set(key, expected, value, ttl_s))

    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        """Add `amount` to the integer at `key` and return it; `ttl_s` applies only on creation."""
        return await self._run(lambda s: s.incr(key, amount, ttl_s))

    async def acquire_rate(
        self, key: str, rate_per_s: float, burst: int, max_wait_s: float
    ) -> float | None:
        """Reserve a GCRA slot; the seconds to wait before sending, or None if beyond max_wait_s."""
        return await self._run(lambda s: s.acquire_rate(key, rate_per_s, burst, max_wait_s))

    async def hset(self, key: str, field: str, value: bytes) -> None:
        """Store `value` under `field` of the hash at `key`."""
        await self._run(lambda s: s.hset(key, field, value))

    async def hget(self, key: str, field: str) -> bytes | None:
        """Return one field of the hash at `key`, or None."""
        return await self._run(lambda s: s.hget(key, field))

    async def hgetall(self, key: str) -> dict[str, bytes]:
        """Return every field of the hash at `key` ({} when absent)."""
        return await self._run(lambda s: s.hgetall(key))

    async def hdel(self, key: str, field: str) -> None:
        """Remove one field; the hash disappears with its last field."""
        await self._run(lambda s: s.hdel(key, field))

    async def close(self) -> None:
        """Stop probing and close both stores; calling it twice is fine."""
        task, self._probe_task = self._probe_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(StateUnavailable):
            await self.primary.close()
        await self.local.close()

    async def _run(self, op: Callable[[StateStore], Awaitable[_T]]) -> _T:
        if not self._degraded:
            try:
                return await op(self.primary)
            except StateUnavailable as exc:
                self._begin_outage(exc)
        self.fallback_ops += 1
        return await op(self.local)

    def _begin_outage(self, exc: StateUnavailable) -> None:
        if self._degraded:
            return  # several operations in flight failed for the same outage
        self._degraded = True
        self.outages += 1
        self._outage_started = time.monotonic()
        log.warning(
            "state store %s is unreachable (%s); serving from local %s state, which other "
            "replicas do not share, until it answers again",
            self.primary.backend,
            exc,
            self.local.backend,
        )
        # Probing in the background keeps an outage's connect timeouts out of callers' latency.
        self._probe_task = asyncio.get_running_loop().create_task(self._probe())

    async def _probe(self) -> None:
        while True:
            await asyncio.sleep(self._probe_interval_s)
            try:
                await self.primary.get(_PROBE_KEY)
            except StateUnavailable:
                continue
            except StateError:
                pass  # it answered, if only with an error: it is reachable
            except Exception:
                log.exception("probing state store %s failed", self.primary.backend)
                continue
            break
        self._degraded = False
        self._probe_task = None
        log.info(
            "state store %s answers again after %.1f s; back on shared state",
            self.primary.backend,
            time.monotonic() - self._outage_started,
        )
