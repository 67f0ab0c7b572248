"""Live phone calls: their contexts, their state in the store (shared by replicas), prefetches."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import msgspec

from patchbay._errors import ToolError
from patchbay.http._build import fill
from patchbay.runtime._result import ToolResult
from patchbay.spec._call import ADHOC_PREFIX, CallContext, call_scoped
from patchbay.spec._model import Prefetch, Tool
from patchbay.state import StateError, StateStore

log = logging.getLogger("patchbay.runtime")

# Calls last minutes; a call whose end never arrived stops holding state after a day.
CALL_STATE_TTL_S = 86400.0
# State lives in the store, so forgetting the least recently used context only costs a reload.
MAX_LIVE_CALLS = 10_000
ADHOC = ADHOC_PREFIX

# A live call: (tenant, id). Two tenants may use the same call id; each has a call of its own.
CallKey = tuple[str | None, str]


def call_key(call_id: str, tenant: str | None = None) -> str:
    """Where a call's state lives in the store (`call:{id}` for a call without a tenant)."""
    return call_scoped("call", call_id, tenant)


def live_key(call: CallContext) -> CallKey:
    """Which live call a context belongs to: its tenant's call of that id."""
    return (call.tenant, call.id)


def named_call(call: CallContext | str, tenant: str | None) -> CallKey:
    """The call named by its context (which carries its tenant) or by id and `tenant`."""
    if isinstance(call, str):
        return (tenant, call)
    if tenant is not None and tenant != call.tenant:
        raise ValueError("the call's context names another tenant than `tenant`")
    return live_key(call)


def args_key(args: Mapping[str, Any]) -> bytes:
    """Validated arguments as one comparable text (the same arguments, the same text)."""
    try:
        return _encode_sorted(args)
    except Exception:
        # Arguments JSON cannot carry (a lone surrogate a template took from call state) get a
        # key equal to no other: their prefetch is never taken, and the tool simply asks again.
        return b"\x00unkeyable-%d" % next(_unkeyable)


_unkeyable = itertools.count()


# Keys sorted so equal states give equal text; anything JSON lacks is written as text.
_encode_sorted = msgspec.json.Encoder(order="sorted", enc_hook=str).encode


# A store's own failures, and a key it cannot write (a call id or tenant with a lone surrogate
# is fine in memory, but SQLite and Redis must encode it).
_STORE_ERRORS = (StateError, UnicodeError)

# What `state_text` gives for state the store cannot keep (never the JSON of a state).
UNSTORABLE = b""


def state_text(call: CallContext) -> bytes:
    """A call's state as the JSON the store keeps, or UNSTORABLE when it cannot be written."""
    try:
        return _encode_sorted(call.state)
    except Exception:
        # Whatever an embedding agent put there (lone surrogates, nesting past the recursion
        # limit, integers too long to write, keys that are not text): the call goes on, its
        # state stays with this replica's live context, and `persist` says so once.
        return UNSTORABLE


def _unstorable_reason(state: Mapping[Any, Any]) -> str:
    """Why the state cannot be written, by exception type only: its text may be the caller's."""
    try:
        _encode_sorted(state)
    except Exception as exc:
        return type(exc).__name__
    return "it changed while being written"


def prefetch_arguments(tool: Tool, call: CallContext) -> dict[str, Any] | None:
    """A prefetch tool's arguments filled from the call; None when the call lacks one of them."""
    template = tool.prefetch.args if isinstance(tool.prefetch, Prefetch) else {}
    try:
        filled: dict[str, Any] = fill(template, {}, call)
    except ToolError:
        return None  # names call state this call does not have yet
    return filled if filled.keys() == template.keys() else None


class CallRegistry:
    """The contexts of live calls and the prefetched answers waiting for them.

    A live call is its tenant's call of that id: the same id under another tenant (or without
    one) is another call, with state of its own, which naming the id never reaches. A call's
    `state` is persisted in the store (`call_key`) after a tool call changes it and read back
    the first time a replica sees the call, so gateway replicas behind a load balancer share
    it. Concurrent tool calls of one call on different replicas write the whole state, last
    writer wins.
    """

    def __init__(self, store: StateStore, *, max_live: int = MAX_LIVE_CALLS) -> None:
        self._store = store
        self._max_live = max_live
        self._calls: OrderedDict[CallKey, CallContext] = OrderedDict()
        self._loads: dict[CallKey, asyncio.Future[None]] = {}
        self._prefetch: dict[CallKey, dict[tuple[str, bytes], asyncio.Task[ToolResult]]] = {}
        self._unstorable: set[CallKey] = set()  # live calls already warned about (see persist)

    def context(self, call: CallContext | str | None) -> CallContext:
        """The live context for `call` (its tenant's call of that id), merging what a newer
        copy of it says. A bare id names the call without a tenant."""
        if call is None:
            call = CallContext(id=f"{ADHOC}{time.monotonic_ns()}")
        elif isinstance(call, str):
            call = CallContext(id=call)
        key = live_key(call)
        known = self._calls.get(key)
        if known is None:
            self._calls[key] = call
            self._evict()
            return call
        self._calls.move_to_end(key)
        if call is not known:
            # The tenant is part of the key: a copy never changes whose call this is.
            known.caller = call.caller or known.caller
            known.state.update(call.state)
        return known

    def _evict(self) -> None:
        while len(self._calls) > self._max_live:
            for key in self._calls:
                if key not in self._prefetch:
                    break
            else:
                return  # every live call is prefetching: keep them all for now
            del self._calls[key]
            self._loads.pop(key, None)
            self._unstorable.discard(key)

    async def load(self, call: CallContext) -> None:
        """Bring in the state persisted for this call (by any replica), once per live call."""
        if call.id.startswith(ADHOC):
            return
        key = live_key(call)
        pending = self._loads.get(key)
        if pending is None:
            if self._store.backend == "memory":
                # Memory answers without suspending, so no concurrent load can interleave:
                # skip the task (and the loop turn it costs) that dedupes remote loads.
                done = self._loads[key] = asyncio.get_running_loop().create_future()
                done.set_result(None)
                await self._load(call)
                return
            pending = self._loads[key] = asyncio.ensure_future(self._load(call))
        await asyncio.shield(pending)

    async def _load(self, call: CallContext) -> None:
        try:
            raw = await self._store.get(call_key(call.id, call.tenant))
        except _STORE_ERRORS:
            log.warning("could not load the state of call %s; starting it empty", call.id)
            return
        if raw is None:
            return
        try:
            stored = json.loads(raw)
        except ValueError:
            return
        if isinstance(stored, dict):
            # What the platform sent with this call wins over what earlier tool calls stored.
            merged = {**stored, **call.state}
            call.state.clear()
            call.state.update(merged)

    async def persist(self, call: CallContext, before: bytes) -> None:
        """Store the call's state if it changed since `before` (its `state_text`)."""
        if call.id.startswith(ADHOC):
            return
        after = state_text(call)
        if after == UNSTORABLE:
            self._cannot_store(call)
            return
        if after == before:
            return
        try:
            await self._store.set(call_key(call.id, call.tenant), after, ttl_s=CALL_STATE_TTL_S)
        except _STORE_ERRORS:
            log.warning("could not store the state of call %s", call.id)

    def _cannot_store(self, call: CallContext) -> None:
        key = live_key(call)
        if key in self._unstorable:
            return
        self._unstorable.add(key)
        log.warning(
            "the state of call %s cannot be stored (%s); it stays with this replica's call only",
            call.id,
            _unstorable_reason(call.state),
        )

    def add_prefetch(
        self, call: CallContext, tool: str, key: bytes, task: asyncio.Task[ToolResult]
    ) -> None:
        """Keep a prefetch's task until a tool call of this call takes it or the call ends."""
        self._prefetch.setdefault(live_key(call), {})[(tool, key)] = task

    def take_prefetch(
        self, call: CallContext, tool: str, key: bytes
    ) -> asyncio.Task[ToolResult] | None:
        """The prefetch of this tool with these arguments, once."""
        live = live_key(call)
        waiting = self._prefetch.get(live)
        if not waiting:
            return None
        task = waiting.pop((tool, key), None)
        if not waiting:
            del self._prefetch[live]
        return task

    def prefetching(self, call: CallContext) -> bool:
        """Whether prefetches of this call are still waiting to be taken."""
        return bool(self._prefetch.get(live_key(call)))

    async def end(self, call_id: str, tenant: str | None = None) -> None:
        """Cancel the call's unfinished prefetches and forget it, here and in the store.

        Only `tenant`'s call of that id ends; another tenant's call of the same id goes on.
        """
        key: CallKey = (tenant, call_id)
        for task in self._prefetch.pop(key, {}).values():
            task.cancel()
        self._calls.pop(key, None)
        self._loads.pop(key, None)
        self._unstorable.discard(key)
        try:
            await self._store.delete(call_key(call_id, tenant))
        except _STORE_ERRORS:
            log.warning("could not release the state of call %s", call_id)

    async def close(self) -> None:
        """Cancel every prefetch still running."""
        tasks = [t for waiting in self._prefetch.values() for t in waiting.values()]
        self._prefetch.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
