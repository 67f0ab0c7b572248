"""Live phone calls: their contexts, their state in the store (shared by replicas), prefetches."""

from __future__ import annotations

import asyncio
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
from patchbay.spec._call import CallContext
from patchbay.spec._model import Prefetch, Tool
from patchbay.state import StateError, StateStore

log = logging.getLogger("patchbay.runtime")

# Calls last minutes; a call whose end never arrived stops holding state after a day.
CALL_STATE_TTL_S = 86400.0
# State lives in the store, so forgetting the least recently used context only costs a reload.
MAX_LIVE_CALLS = 10_000
ADHOC = "adhoc-"


def call_key(call_id: str) -> str:
    """Where a call's state lives in the store."""
    return f"call:{call_id}"


def args_key(args: Mapping[str, Any]) -> bytes:
    """Validated arguments as one comparable text (the same arguments, the same text)."""
    return _encode_sorted(args)


# Keys sorted so equal states give equal text; anything JSON lacks is written as text.
_encode_sorted = msgspec.json.Encoder(order="sorted", enc_hook=str).encode


def state_text(call: CallContext) -> bytes:
    """A call's state as the JSON the store keeps."""
    return _encode_sorted(call.state)


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

    A call's `state` is persisted in the store (`call:{id}`) after a tool call changes it and
    read back the first time a replica sees the call, so gateway replicas behind a load
    balancer share it. Concurrent tool calls of one call on different replicas write the
    whole state, last writer wins.
    """

    def __init__(self, store: StateStore, *, max_live: int = MAX_LIVE_CALLS) -> None:
        self._store = store
        self._max_live = max_live
        self._calls: OrderedDict[str, CallContext] = OrderedDict()
        self._loads: dict[str, asyncio.Future[None]] = {}
        self._prefetch: dict[str, dict[tuple[str, bytes], asyncio.Task[ToolResult]]] = {}

    def context(self, call: CallContext | str | None) -> CallContext:
        """The live context for `call`, merging what a newer copy of it says."""
        if call is None:
            call = CallContext(id=f"{ADHOC}{time.monotonic_ns()}")
        elif isinstance(call, str):
            call = CallContext(id=call)
        known = self._calls.get(call.id)
        if known is None:
            self._calls[call.id] = call
            self._evict()
            return call
        self._calls.move_to_end(call.id)
        if call is not known:
            known.tenant = call.tenant or known.tenant
            known.caller = call.caller or known.caller
            known.state.update(call.state)
        return known

    def _evict(self) -> None:
        while len(self._calls) > self._max_live:
            for call_id in self._calls:
                if call_id not in self._prefetch:
                    break
            else:
                return  # every live call is prefetching: keep them all for now
            del self._calls[call_id]
            self._loads.pop(call_id, None)

    async def load(self, call: CallContext) -> None:
        """Bring in the state persisted for this call (by any replica), once per live call."""
        if call.id.startswith(ADHOC):
            return
        pending = self._loads.get(call.id)
        if pending is None:
            if self._store.backend == "memory":
                # Memory answers without suspending, so no concurrent load can interleave:
                # skip the task (and the loop turn it costs) that dedupes remote loads.
                done = self._loads[call.id] = asyncio.get_running_loop().create_future()
                done.set_result(None)
                await self._load(call)
                return
            pending = self._loads[call.id] = asyncio.ensure_future(self._load(call))
        await asyncio.shield(pending)

    async def _load(self, call: CallContext) -> None:
        try:
            raw = await self._store.get(call_key(call.id))
        except StateError:
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
        if after == before:
            return
        try:
            await self._store.set(call_key(call.id), after, ttl_s=CALL_STATE_TTL_S)
        except StateError:
            log.warning("could not store the state of call %s", call.id)

    def add_prefetch(
        self, call_id: str, tool: str, key: bytes, task: asyncio.Task[ToolResult]
    ) -> None:
        """Keep a prefetch's task until a tool call takes it or the call ends."""
        self._prefetch.setdefault(call_id, {})[(tool, key)] = task

    def take_prefetch(self, call_id: str, tool: str, key: bytes) -> asyncio.Task[ToolResult] | None:
        """The prefetch of this tool with these arguments, once."""
        waiting = self._prefetch.get(call_id)
        if not waiting:
            return None
        task = waiting.pop((tool, key), None)
        if not waiting:
            del self._prefetch[call_id]
        return task

    def prefetching(self, call_id: str) -> bool:
        """Whether prefetches of this call are still waiting to be taken."""
        return bool(self._prefetch.get(call_id))

    async def end(self, call_id: str) -> None:
        """Cancel the call's unfinished prefetches and forget it, here and in the store."""
        for task in self._prefetch.pop(call_id, {}).values():
            task.cancel()
        self._calls.pop(call_id, None)
        self._loads.pop(call_id, None)
        try:
            await self._store.delete(call_key(call_id))
        except StateError:
            log.warning("could not release the state of call %s", call_id)

    async def close(self) -> None:
        """Cancel every prefetch still running."""
        tasks = [t for waiting in self._prefetch.values() for t in waiting.values()]
        self._prefetch.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
