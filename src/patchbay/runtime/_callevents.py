"""Call events: what reaches a live call outside a tool answer, kept and delivered.

Each call has an event log in the state store (the last MAX_EVENTS events, for a day), with
ids counted per call by the store (`incr`), so a subscriber on any replica replays what it
missed after the last id it saw. New events are delivered through the store's notifier
(in-process queues; Redis pub/sub across replicas). A call is live from its start (or first
tool call) until `end_call`, which also ends every subscription to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any

from patchbay.runtime._calls import CALL_STATE_TTL_S, CallKey, named_call
from patchbay.runtime._failure import outcome_say
from patchbay.spec import Config
from patchbay.spec._call import ADHOC_PREFIX, CallContext, call_scoped
from patchbay.spec._model import Tool
from patchbay.state import StateError, StateStore
from patchbay.state._batch import Get, run_batch
from patchbay.state._pubsub import Notifier, notifier_for

log = logging.getLogger("patchbay.runtime")

KINDS = frozenset({"webhook", "completion", "background", "pending"})
MAX_EVENTS = 200  # per call: older events are dropped as new ones come
EVENTS_TTL_S = CALL_STATE_TTL_S
# The id counter outlives the events, so ids never restart while old events may remain.
_COUNTER_TTL_S = 2 * CALL_STATE_TTL_S
# How long an id missing between two delivered ones is waited for before it is skipped as
# never stored (its publisher died between taking the id and storing the event). Long enough
# for a store write on a loaded replica: a skipped id that then lands is lost to the stream.
_GAP_WAIT_S = 1.0
_MAX_KNOWN = 10_000  # calls this replica remembers marking live

_LIVE = b"live"
_ENDED = b"ended"
# Message kinds on a call's channel: an event (its JSON follows), or the call's end.
_EVENT = b"E"
_END = b"X"


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One event of a call: its id (increasing per call), kind, name, words and data."""

    id: str
    kind: str
    event: str
    say: str | None
    data: dict[str, Any]
    call_id: str
    tenant: str | None
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data."""
        return {
            "id": self.id,
            "kind": self.kind,
            "event": self.event,
            "say": self.say,
            "data": self.data,
            "call_id": self.call_id,
            "tenant": self.tenant,
            "at": self.at,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CallEvent:
        """The event `to_dict` wrote."""
        return cls(
            id=str(raw["id"]),
            kind=str(raw["kind"]),
            event=str(raw["event"]),
            say=raw.get("say"),
            data=dict(raw.get("data") or {}),
            call_id=str(raw["call_id"]),
            tenant=raw.get("tenant"),
            at=float(raw.get("at") or 0.0),
        )


def parse_after(after: str | None) -> int:
    """The numeric id a stream resumes after (0: from the first event); ValueError if not one."""
    if after is None or after == "":
        return 0
    if not after.isascii() or not after.isdigit() or len(after) > 18:
        raise ValueError(f"an event id is a non-negative whole number, got {after[:40]!r}")
    return int(after)


def _scope(call_id: str, tenant: str | None) -> str:
    return call_scoped("callev", call_id, tenant)


class CallEvents:
    """The event logs of calls and their delivery to subscribers, here and on other replicas."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._notifier = notifier_for(store)
        # Calls this replica marked live, with the write doing it (end_call waits for it).
        self._marking: OrderedDict[CallKey, asyncio.Future[None]] = OrderedDict()

    @property
    def notifier(self) -> Notifier:
        """The notifier reaching this store's subscribers (long-running tools wait on it)."""
        return self._notifier

    async def publish(
        self,
        call_id: str,
        *,
        tenant: str | None,
        kind: str,
        event: str,
        say: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> CallEvent:
        """Store an event in the call's log, then deliver it to the call's subscribers.

        Raises ValueError for an unknown kind or data JSON cannot carry, StateError when the
        store cannot keep it (nothing was delivered then).
        """
        if kind not in KINDS:
            raise ValueError(f"unknown call event kind {kind!r}: one of {sorted(KINDS)}")
        if not isinstance(call_id, str) or not call_id:
            raise ValueError("a call event needs the call's id")
        try:  # exactly what every subscriber will read back, whichever replica it is on
            clean: dict[str, Any] = json.loads(json.dumps(dict(data or {}), default=str))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"call event data is not JSON: {exc}") from None
        scope = _scope(call_id, tenant)
        number = await self._store.incr(f"{scope}:seq", ttl_s=_COUNTER_TTL_S)
        found = CallEvent(str(number), kind, event, say, clean, call_id, tenant)
        text = json.dumps(found.to_dict(), separators=(",", ":")).encode()
        writes = [self._store.set(f"{scope}:{number}", text, ttl_s=EVENTS_TTL_S)]
        if number > MAX_EVENTS:
            writes.append(self._store.delete(f"{scope}:{number - MAX_EVENTS}"))
        await asyncio.gather(*writes)
        await self._notifier.publish(scope, _EVENT + text)
        return found

    def mark_live(self, call_id: str, tenant: str | None) -> asyncio.Future[None] | None:
        """Note that the call is live, once per call and replica: the write runs in the
        background (a tool call does not wait for it); None when already noted."""
        key: CallKey = (tenant, call_id)
        if key in self._marking or call_id.startswith(ADHOC_PREFIX):
            return None
        write = self._store.set(f"{_scope(call_id, tenant)}:live", _LIVE, ttl_s=CALL_STATE_TTL_S)
        marking = self._marking[key] = asyncio.ensure_future(_quietly(write))
        while len(self._marking) > _MAX_KNOWN:
            self._marking.popitem(last=False)
        return marking

    async def end(self, call_id: str, tenant: str | None) -> None:
        """The call ended: say so in the store and end every subscription to it."""
        marking = self._marking.pop((tenant, call_id), None)
        if marking is not None:
            await marking  # its `live` must not land after the `ended` below
        scope = _scope(call_id, tenant)
        await _quietly(self._store.set(f"{scope}:live", _ENDED, ttl_s=CALL_STATE_TTL_S))
        await self._notifier.publish(scope, _END)

    async def is_live(self, call_id: str, tenant: str | None) -> bool:
        """Whether the call started (here or on another replica) and has not ended."""
        marking = self._marking.get((tenant, call_id))
        if marking is not None and not marking.done():
            return True
        try:
            return await self._store.get(f"{_scope(call_id, tenant)}:live") == _LIVE
        except UnicodeError:
            return False  # an id no store can key never started anywhere

    async def stored(self, call_id: str, tenant: str | None, after: int = 0) -> list[CallEvent]:
        """The call's stored events after id `after`, oldest first."""
        return (await self._window(_scope(call_id, tenant), after))[1]

    async def _window(self, scope: str, after: int) -> tuple[int, list[CallEvent]]:
        """The first id the log can still hold after `after`, and the stored events from it."""
        raw = await self._store.get(f"{scope}:seq")
        last = int(raw) if raw else 0
        first = max(after + 1, last - MAX_EVENTS + 1)
        return first, await self._read(scope, first, last)

    async def _read(self, scope: str, first: int, last: int) -> list[CallEvent]:
        if last < first:
            return []
        # One round trip on a store that pipelines (Redis), however many events are missed.
        found = await run_batch(self._store, [Get(f"{scope}:{n}") for n in range(first, last + 1)])
        for outcome in found:
            if isinstance(outcome, Exception):
                raise outcome
        return [CallEvent.from_dict(json.loads(t)) for t in found if isinstance(t, bytes)]

    async def stream(
        self, call_id: str, tenant: str | None, after: int = 0
    ) -> AsyncGenerator[CallEvent, None]:
        """Stored events after `after`, then new ones in id order, until the call ends."""
        scope = _scope(call_id, tenant)
        inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        # Subscribed before the log is read, so nothing falls between the two.
        subscription = await self._notifier.subscribe(
            scope, inbox.put_nowait, lambda: inbox.put_nowait(None)
        )
        try:
            ended = await self._store.get(f"{scope}:live") == _ENDED
            first, found_events = await self._window(scope, after)
            if ended:
                for found in found_events:
                    yield found
                return
            # Stored ahead of an id not seen yet: two publishers took ids 5 and 6 and 6 was
            # stored first. They wait for the missing id like events delivered out of order.
            waiting: dict[int, CallEvent] = {int(e.id): e for e in found_events}
            last = first - 1  # older ids are gone from the log (it keeps the last ones only)
            while last + 1 in waiting:
                last += 1
                yield waiting.pop(last)
            gap_until = 0.0  # when an open gap is given up on and the log read
            while True:
                gave_up = False
                try:
                    if waiting:
                        gap_until = gap_until or time.monotonic() + _GAP_WAIT_S
                        timeout: float | None = max(0.0, gap_until - time.monotonic())
                    else:
                        gap_until, timeout = 0.0, None
                    # asyncio.timeout: wait_for can swallow a cancellation on 3.11.
                    async with asyncio.timeout(timeout):
                        message = await inbox.get()
                except TimeoutError:
                    message, gave_up = None, True  # a gap stayed open: read the log
                if message == _END:
                    for found in await self.stored(call_id, tenant, last):
                        yield found
                    return
                if message is not None and message.startswith(_EVENT):
                    found = CallEvent.from_dict(json.loads(message[1:]))
                    if int(found.id) > last:
                        waiting[int(found.id)] = found
                else:  # resync, gap or a bare wake-up: the log has everything stored
                    for found in await self.stored(call_id, tenant, last):
                        waiting.setdefault(int(found.id), found)
                    if gave_up and waiting:
                        last = min(waiting) - 1  # what never got stored is skipped
                        gap_until = 0.0
                while last + 1 in waiting:
                    last += 1
                    yield waiting.pop(last)
        finally:
            with contextlib.suppress(Exception):
                await subscription.cancel()

    async def close(self) -> None:
        """Let live marks land, and release the notifier's connections."""
        pending = [m for m in self._marking.values() if not m.done()]
        if pending:
            await asyncio.wait(pending, timeout=5.0)
        await self._notifier.close()


async def _quietly(work: Any) -> None:
    """Await a store write whose failure only costs a replica's view of a call's liveness."""
    try:
        await work
    except (StateError, UnicodeError) as exc:  # a call id no store can key (lone surrogate)
        log.warning("could not record whether a call is live: %s", type(exc).__name__)


class CallEventStream:
    """`ToolRuntime.call_events`: an async iterator (and context manager) over a call's events."""

    def __init__(self, events: CallEvents, call_id: str, tenant: str | None, after: int) -> None:
        self._gen = events.stream(call_id, tenant, after)

    def __aiter__(self) -> CallEventStream:
        return self

    async def __anext__(self) -> CallEvent:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        """Stop listening (the subscription is released)."""
        await self._gen.aclose()

    async def __aenter__(self) -> CallEventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# What of an outcome record (`Outcomes.record`) goes into its call event.
_OUTCOME_FIELDS = ("tool", "key", "outcome", "ok", "status", "result", "reference", "error")


async def publish_outcome(
    events: CallEvents, tool: Tool | None, record: dict[str, Any], tenant: str | None
) -> None:
    """Tell a call how its background write (`background`) or write in doubt (`pending`) ended."""
    call_id = str(record.get("call_id") or "")
    if not call_id or call_id.startswith(ADHOC_PREFIX):
        return  # a tool call linked to no call: nobody can be listening
    data = {k: record[k] for k in _OUTCOME_FIELDS if record.get(k) is not None}
    data["ok"] = bool(record.get("ok"))
    await events.publish(
        call_id,
        tenant=tenant,
        kind="background" if record.get("kind") == "outbox" else "pending",
        event=str(record.get("tool")),
        say=outcome_say(tool, record),
        data=data,
    )


class CallEventMethods:
    """ToolRuntime's call-event methods (thin: the work is CallEvents')."""

    config: Config
    _events: CallEvents

    async def publish_call_event(
        self,
        call_id: str,
        *,
        tenant: str | None,
        kind: str,
        event: str,
        say: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> CallEvent:
        """Add an event to a call's log and deliver it to its subscribers on every replica.

        `kind` is webhook, completion, background or pending; `data` must be JSON-safe and
        scrubbed already. Raises ValueError for a bad event, StateError if it cannot be kept.
        """
        return await self._events.publish(
            call_id, tenant=tenant, kind=kind, event=event, say=say, data=data
        )

    def call_events(
        self, call_id: CallContext | str, *, tenant: str | None = None, after: str | None = None
    ) -> CallEventStream:
        """The call's events as an async iterator: those stored after id `after` (None: all
        kept), then new ones as they come, until the call ends or the iterator is closed.

        The call is named by its context, or by its id and `tenant`. Raises ValueError for an
        `after` that is not an event id.
        """
        owner, cid = named_call(call_id, tenant)
        return CallEventStream(self._events, cid, owner, parse_after(after))

    async def call_is_live(self, call_id: str, tenant: str | None = None) -> bool:
        """Whether the call started (on any replica) and has not ended."""
        return await self._events.is_live(call_id, tenant)

    async def _outcome_event(self, record: dict[str, Any], tenant: str | None) -> None:
        """`Outcomes.record`'s listener: the outcome as a call event."""
        tool = self.config.tools.get(str(record.get("tool")))
        await publish_outcome(self._events, tool, record, tenant)
