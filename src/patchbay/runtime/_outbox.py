"""The durable outbox of `mode: background` tools: answer at once, write later, exactly once.

An entry is a field of the `outbox` hash: the tool, its validated arguments, the call as it
was (state included, so templates fill the same way later) and the idempotency key. Workers
(one per runtime, on any replica) claim a due entry with a lease (`outbox-lease:{ref}`,
set_if_absent with a TTL), send it through the normal pipeline, and delete it on success or
on a final answer; on a retryable failure they leave it for later with a backoff. A worker
that dies holding a lease only delays the entry until the lease expires; sending again is
safe because every background write carries an idempotency key (the loader insists).
Written by hand: task queues (arq, saq, Celery) bring their own broker and worker processes,
while this must run inside the runtime on whichever StateStore the config names.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from patchbay._errors import ErrorCode
from patchbay.runtime._logs import log_exception
from patchbay.runtime._outcomes import Outcomes
from patchbay.runtime._result import ToolResult
from patchbay.spec._call import CallContext
from patchbay.state import StateError, StateStore

log = logging.getLogger("patchbay.runtime")

OUTBOX = "outbox"
DEAD = "outbox-dead"


@dataclass(slots=True)
class OutboxEntry:
    """One write waiting to be performed."""

    ref: str
    tool: str
    args: dict[str, Any]
    call: dict[str, Any]  # id, tenant, caller, state
    idempotency_key: str | None
    created_at: float = field(default_factory=time.time)
    attempts: int = 0
    next_at: float = 0.0  # wall clock: replicas and restarts agree on it
    last_error: str | None = None

    def context(self) -> CallContext:
        """The call as it was when the write was accepted."""
        return CallContext(
            id=str(self.call["id"]),
            tenant=self.call.get("tenant"),
            caller=self.call.get("caller"),
            state=dict(self.call.get("state") or {}),
        )

    def encode(self) -> bytes:
        """The entry as stored."""
        return json.dumps(asdict(self), separators=(",", ":"), default=str).encode()

    @classmethod
    def decode(cls, raw: bytes) -> OutboxEntry | None:
        """An entry from its stored bytes, or None for bytes this module did not write."""
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    """How often and how long the outbox tries."""

    poll_s: float = 1.0  # how often a worker looks for due entries it was not told about
    backoff_s: float = 0.5
    max_backoff_s: float = 60.0
    max_attempts: int = 20
    lease_margin_s: float = 35.0  # beyond the tool's budget: the grace of a shielded write
    concurrency: int = 16


Perform = Callable[[OutboxEntry], Awaitable[ToolResult]]
LeaseSpan = Callable[[str], float]


class Outbox:
    """Queue writes durably and perform them in the background, with retries and a record."""

    def __init__(
        self,
        store: StateStore,
        outcomes: Outcomes,
        perform: Perform,
        lease_span: LeaseSpan,
        settings: OutboxSettings | None = None,
    ) -> None:
        self._store = store
        self._outcomes = outcomes
        self._perform = perform
        self._lease_span = lease_span
        self.settings = settings or OutboxSettings()
        self._owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}".encode()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._closed = False
        self._random = random.Random()

    async def enqueue(self, entry: OutboxEntry) -> None:
        """Store a write durably (raises StateError if the store cannot take it)."""
        await self._store.hset(OUTBOX, entry.ref, entry.encode())
        self._wake.set()

    def start(self) -> None:
        """Start this runtime's worker unless it runs already (or the outbox is closed)."""
        if self._worker is None and not self._closed:
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def pending(self) -> list[OutboxEntry]:
        """Every entry still waiting, oldest first."""
        found = [OutboxEntry.decode(raw) for raw in (await self._store.hgetall(OUTBOX)).values()]
        return sorted((e for e in found if e is not None), key=lambda e: e.created_at)

    async def drain(self, timeout_s: float) -> bool:
        """Wait until no entry is waiting (due or in backoff) or in flight; False on timeout.

        Entries stay in the outbox until they succeed, get a final answer or are abandoned,
        so this waits out their whole retry plan (bounded by `timeout_s`).
        """
        self.start()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                waiting = bool(await self._store.hgetall(OUTBOX))
            except StateError:
                waiting = False  # nothing can be sent without the store anyway
            if not waiting and not self._inflight:
                return True
            if time.monotonic() >= deadline:
                return False
            self._wake.set()
            await asyncio.sleep(0.02)

    async def close(self, timeout_s: float = 30.0) -> None:
        """Stop claiming entries; let writes in flight finish (each within its budget)."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=timeout_s)
        for task in list(self._inflight):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            wait = self.settings.poll_s
            try:
                entries = await self.pending()
            except StateError:
                log.warning("the outbox cannot read the state store; trying again shortly")
                entries = []
            now = time.time()
            for entry in entries:
                if entry.next_at > now:
                    wait = min(wait, entry.next_at - now)
                    continue
                if len(self._inflight) >= self.settings.concurrency:
                    break
                if entry.ref in {t.get_name() for t in self._inflight}:
                    continue
                if await self._claim(entry):
                    task = asyncio.get_running_loop().create_task(
                        self._process(entry), name=entry.ref
                    )
                    self._inflight.add(task)
                    task.add_done_callback(self._done)
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that
            # arrives as the wake-up does, and `close` would then wait for this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.01)):
                    await self._wake.wait()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()  # a slot is free, and the entry may be due again

    async def _claim(self, entry: OutboxEntry) -> bool:
        lease = f"outbox-lease:{entry.ref}"
        try:
            return await self._store.set_if_absent(
                lease, self._owner, ttl_s=self._lease_span(entry.tool)
            )
        except StateError:
            return False

    async def _release(self, entry: OutboxEntry) -> None:
        lease = f"outbox-lease:{entry.ref}"
        with contextlib.suppress(StateError):
            if await self._store.get(lease) == self._owner:
                await self._store.delete(lease)

    async def _process(self, entry: OutboxEntry) -> None:
        try:
            # Another worker may have finished it between our read and our claim.
            if await self._store.hget(OUTBOX, entry.ref) is None:
                return
            entry.attempts += 1
            result = await self._perform(entry)
            await self._settle(entry, result)
        except StateError:
            log.warning("the outbox lost the state store while sending %s", entry.ref)
        except Exception as exc:
            log_exception(log, exc, "the outbox failed on %s", entry.ref)
        finally:
            await self._release(entry)

    async def _settle(self, entry: OutboxEntry, result: ToolResult) -> None:
        error = result.error
        # `pending` is final for the LLM (it must not resend), not for the outbox: it resends
        # with the same key until the upstream answers definitively.
        final = error is not None and not error.retryable and error.code != ErrorCode.PENDING
        if result.ok or final:
            await self._store.hdel(OUTBOX, entry.ref)
            await self._record(entry, result, result.error.code if result.error else "ok")
            return
        entry.last_error = error.code if error is not None else "unknown"
        if entry.attempts >= self.settings.max_attempts:
            await self._store.hset(DEAD, entry.ref, entry.encode())
            await self._store.hdel(OUTBOX, entry.ref)
            await self._record(entry, result, "abandoned")
            log.error("gave up on background write %s after %d attempts", entry.ref, entry.attempts)
            return
        cap = min(self.settings.max_backoff_s, self.settings.backoff_s * 2 ** (entry.attempts - 1))
        entry.next_at = time.time() + self._random.uniform(cap / 2, cap)
        await self._store.hset(OUTBOX, entry.ref, entry.encode())

    async def _record(self, entry: OutboxEntry, result: ToolResult, outcome: str) -> None:
        await self._outcomes.record(
            "outbox",
            tool=entry.tool,
            call_id=str(entry.call["id"]),
            key=entry.ref,
            outcome=outcome,
            tenant=entry.call.get("tenant"),
            result=result.result if result.ok else None,
            extra={
                "reference": entry.ref,
                "attempts": entry.attempts,
                "error": result.error.code if result.error else None,
            },
        )


def new_entry(
    tool: str, args: dict[str, Any], call: CallContext, idempotency_key: str | None
) -> OutboxEntry:
    """An entry for a write accepted now, due at once."""
    return OutboxEntry(
        ref=f"bg_{uuid.uuid4().hex}",
        tool=tool,
        args=args,
        call={
            "id": call.id,
            "tenant": call.tenant,
            "caller": call.caller,
            "state": dict(call.state),
        },
        idempotency_key=idempotency_key,
    )
