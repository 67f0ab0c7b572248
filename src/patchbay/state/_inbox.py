"""The durable webhook inbox: store a verified delivery once, then process it with retries.

A delivery is kept before it is acknowledged, under keys of the durable `inbox` namespace:

- `inbox:{source}:{id}` (set_if_absent, long TTL) deduplicates by the delivery's id; its value
  says how far it got: `accepted`, then `done`;
- the `inbox` hash holds each accepted delivery not yet processed (field `{source}:{id}`);
- `inbox:lease:{source}:{id}` (set_if_absent with a TTL) lets one worker, on any replica,
  process an entry at a time; a worker that dies only delays the entry until its lease ends;
- the `inbox:unmatched` hash keeps what matched no live call, never dropping it.

A process killed after acknowledging leaves the entry in the hash for the next worker; one
killed while processing leaves `accepted`, so the entry is processed again (the processor's
own steps are keyed by the delivery's id). Written by hand like the outbox: it must run inside
the runtime on whichever StateStore the config names.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from patchbay.state._protocol import StateError, StateStore

log = logging.getLogger("patchbay.webhooks")

INBOX = "inbox"
UNMATCHED = "inbox:unmatched"
ACCEPTED = b"accepted"
DONE = b"done"


class ProcessLater(Exception):
    """Raised by processing when a delivery must wait a moment (a tool is waiting on it)."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(f"process again in {delay_s} s")
        self.delay_s = delay_s


DEDUP_TTL_S = 7 * 86400.0  # senders retry for a few days at most
# How long a copy waits for the first claimant of its id to store the delivery.
CLAIM_GRACE_S = 2.0


def dedup_key(source: str, delivery: str) -> str:
    """Where a delivery's id is remembered."""
    return f"inbox:{source}:{delivery}"


@dataclass(slots=True)
class InboxEntry:
    """One verified delivery waiting to be processed."""

    source: str
    id: str
    payload: Any  # the delivery's JSON
    received_at: float = field(default_factory=time.time)
    attempts: int = 0
    next_at: float = 0.0
    last_error: str | None = None

    @property
    def ref(self) -> str:
        """Its field in the `inbox` hash."""
        return f"{self.source}:{self.id}"

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), default=str).encode()

    @classmethod
    def decode(cls, raw: bytes) -> InboxEntry | None:
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError):
            return None


Process = Callable[[InboxEntry], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class InboxSettings:
    """How often and how long deliveries are tried."""

    poll_s: float = 1.0
    lease_s: float = 10.0  # a worker killed mid-way delays its delivery this long
    backoff_s: float = 0.2
    max_backoff_s: float = 30.0
    max_attempts: int = 10  # then the delivery is kept as unmatched (reason: failed)
    concurrency: int = 16


class Inbox:
    """Accept deliveries durably and process each once, on any replica."""

    def __init__(
        self, store: StateStore, process: Process, settings: InboxSettings | None = None
    ) -> None:
        self._store = store
        self._process = process
        self.settings = settings or InboxSettings()
        self._owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}".encode()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._closed = False
        self._random = random.Random()

    async def accept(self, entry: InboxEntry) -> bool:
        """Store a delivery; False for one already stored (a replay: acknowledge, do nothing).

        Raises StateError when the store cannot take it (the sender must try again).
        """
        key = dedup_key(entry.source, entry.id)
        claimed = await self._store.set_if_absent(key, ACCEPTED, ttl_s=DEDUP_TTL_S)
        if not claimed and await self._stored_by_another(key, entry):
            return False  # a replay: stored (or done) under the first claim
        # Claimed here, or by a process that died before storing the entry: store it now
        # (processing checks `done` first, so an entry re-stored late is not applied twice).
        await self._store.hset(INBOX, entry.ref, entry.encode())
        if not await self._take(entry):
            self._wake.set()  # busy: the worker's next scan takes it
        return True

    async def _stored_by_another(self, key: str, entry: InboxEntry) -> bool:
        """Whether the delivery that claimed this id first is stored (or done).

        A copy arriving while the first is between its claim and its store waits for it (a
        moment), so it is acknowledged only once the delivery is durable; a claim that stays
        unstored past the grace period is a claimant that died, and this copy stores it.
        """
        deadline = time.monotonic() + CLAIM_GRACE_S
        while True:
            if await self._store.get(key) != ACCEPTED:
                return True  # done (or its key just expired): nothing more to do
            if await self._store.hget(INBOX, entry.ref) is not None:
                return True  # stored and waiting
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)

    def start(self) -> None:
        """Start this runtime's worker unless it runs already."""
        if self._worker is None and not self._closed:
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def pending(self) -> list[InboxEntry]:
        """Every delivery not yet processed, oldest first."""
        found = [InboxEntry.decode(raw) for raw in (await self._store.hgetall(INBOX)).values()]
        return sorted((e for e in found if e is not None), key=lambda e: e.received_at)

    async def keep_unmatched(self, entry: InboxEntry, record: dict[str, Any]) -> None:
        """Keep what found no live call (or no rule), queryable with `unmatched`."""
        await self._store.hset(UNMATCHED, entry.ref, json.dumps(record, default=str).encode())

    async def unmatched(self) -> list[dict[str, Any]]:
        """Every delivery kept as unmatched, oldest first."""
        found = []
        for raw in (await self._store.hgetall(UNMATCHED)).values():
            with contextlib.suppress(ValueError):
                found.append(json.loads(raw))
        return sorted(found, key=lambda r: float(r.get("received_at") or 0))

    async def drain(self, timeout_s: float) -> bool:
        """Wait until no delivery waits or is in flight; False on timeout."""
        self.start()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                waiting = bool(await self._store.hgetall(INBOX))
            except StateError:
                waiting = False
            if not waiting and not self._inflight:
                return True
            if time.monotonic() >= deadline:
                return False
            self._wake.set()
            await asyncio.sleep(0.01)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Stop claiming deliveries; let those in flight finish."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        tasks = list(self._inflight.values())
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while not self._closed:
            self._wake.clear()
            wait = self.settings.poll_s
            try:
                entries = await self.pending()
            except StateError:
                log.warning("the webhook inbox cannot read the state store; trying again shortly")
                entries = []
            now = time.time()
            for entry in entries:
                if entry.next_at > now:
                    wait = min(wait, entry.next_at - now)
                    continue
                if len(self._inflight) >= self.settings.concurrency:
                    break
                await self._take(entry)
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancel of close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.005)):
                    await self._wake.wait()

    async def _take(self, entry: InboxEntry) -> bool:
        """Process an entry now, here, if a slot is free and its lease can be had."""
        if self._closed or len(self._inflight) >= self.settings.concurrency:
            return False
        if entry.ref in self._inflight or not await self._claim(entry):
            return entry.ref in self._inflight
        task = asyncio.get_running_loop().create_task(self._handle(entry))
        self._inflight[entry.ref] = task
        task.add_done_callback(functools.partial(self._done, entry.ref))
        return True

    def _done(self, ref: str, _: asyncio.Task[None]) -> None:
        self._inflight.pop(ref, None)
        self._wake.set()

    async def _claim(self, entry: InboxEntry) -> bool:
        try:
            lease = f"inbox:lease:{entry.ref}"
            return await self._store.set_if_absent(lease, self._owner, ttl_s=self.settings.lease_s)
        except StateError:
            return False

    async def _release(self, entry: InboxEntry) -> None:
        lease = f"inbox:lease:{entry.ref}"
        with contextlib.suppress(StateError):
            if await self._store.get(lease) == self._owner:
                await self._store.delete(lease)

    async def _handle(self, entry: InboxEntry) -> None:
        key = dedup_key(entry.source, entry.id)
        try:
            if await self._store.hget(INBOX, entry.ref) is None:
                return  # another worker finished it between our read and our claim
            if await self._store.get(key) == DONE:
                await self._store.hdel(INBOX, entry.ref)
                return
            entry.attempts += 1
            try:
                await self._process(entry)
            except StateError:
                raise
            except ProcessLater as later:  # not a failure: no attempt is spent
                entry.attempts -= 1
                entry.next_at = time.time() + later.delay_s
                await self._store.hset(INBOX, entry.ref, entry.encode())
                return
            except Exception as exc:
                await self._retry(entry, type(exc).__name__)
                log.warning("webhook %s failed (%s); trying again", entry.ref, type(exc).__name__)
                return
            await self._store.set(key, DONE, ttl_s=DEDUP_TTL_S)
            await self._store.hdel(INBOX, entry.ref)
        except StateError:
            log.warning("the webhook inbox lost the state store while processing %s", entry.ref)
        finally:
            await self._release(entry)

    async def _retry(self, entry: InboxEntry, error: str) -> None:
        entry.last_error = error
        if entry.attempts >= self.settings.max_attempts:
            record = {
                "source": entry.source,
                "id": entry.id,
                "received_at": entry.received_at,
                "reason": "failed",
                "error": error,
                "payload": entry.payload,
            }
            await self.keep_unmatched(entry, record)
            await self._store.set(dedup_key(entry.source, entry.id), DONE, ttl_s=DEDUP_TTL_S)
            await self._store.hdel(INBOX, entry.ref)
            return
        cap = min(self.settings.max_backoff_s, self.settings.backoff_s * 2 ** (entry.attempts - 1))
        entry.next_at = time.time() + self._random.uniform(cap / 2, cap)
        await self._store.hset(INBOX, entry.ref, entry.encode())
