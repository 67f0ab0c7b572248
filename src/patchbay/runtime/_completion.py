"""Long-running tools (`completion:`): a start answer completed by a webhook event.

The tool's start answer gives a correlation value (its `correlate` entry `key`). The tool then
waits up to `wait_s` (within its budget) for the webhook event whose `match` value is that
value, and answers with it; past `wait_s` it answers `pending`, and the completion reaches the
call later as a call event of kind "completion".

Exactly one of the two delivers a completion, decided in the state store (`cmpl` namespace,
per correlation value and tenant):

- `:data` the first matching delivery (kept even when it came before the start's answer, when
  no call can be found by the value yet: that race must not lose it);
- `:wait` "waiting" while a tool waits (written before its correlation key, so processing that
  finds the call sees it), "gone" once it gave up;
- `:claim` set once (`set_if_absent`): "inline" by the waiting tool, or the delivery's ref by
  the processing that publishes the call event. A completion answered inline is never
  published; a second delivery of the same completion finds the claim taken and publishes
  nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from patchbay.runtime._calls import CallRegistry, state_text
from patchbay.runtime._result import ErrorInfo, ToolResult
from patchbay.runtime._webhooks import Unfilled, key_text, render, search
from patchbay.spec._call import CallContext, call_scoped
from patchbay.spec._model import Config, Tool
from patchbay.state import StateError, StateStore
from patchbay.state._inbox import ProcessLater
from patchbay.state._pubsub import Notifier

log = logging.getLogger("patchbay.webhooks")

KEEP_S = 86400.0  # an early or late completion waits this long to be claimed
_WAIT_MARGIN_S = 5.0  # a waiting mark outlives the wait by this much (a dead waiter expires)
_RECHECK_S = 0.5  # a delivery a tool waits on is processed again after this, until it is claimed
_INLINE = b"inline"
PENDING_WORDS = (
    "The operation has started and is not finished yet; its completion will follow on the call."
)
Correlate = Callable[[Tool, Any, CallContext], Awaitable[None]]


def _base(value: str, tenant: str | None) -> str:
    return call_scoped("cmpl", value, tenant)


class Completions:
    """Where long-running tools wait for their webhook, and where processing hands it over."""

    def __init__(
        self, config: Config, store: StateStore, notifier: Notifier, calls: CallRegistry
    ) -> None:
        self._config = config
        self._store = store
        self._notifier = notifier
        self._calls = calls
        self._tools: dict[tuple[str, str], list[Tool]] = {}
        for tool in config.tools.values():
            if tool.completion is not None:
                where = (tool.completion.webhook, tool.completion.event)
                self._tools.setdefault(where, []).append(tool)

    def tools_for(self, source: str, event: str) -> list[Tool]:
        """The long-running tools an event of `source` completes (empty: an ordinary event)."""
        return self._tools.get((source, event), [])

    # --- the webhook's side ---

    async def arrived(
        self,
        tools: list[Tool],
        payload: Any,
        tenant: str | None,
        record: Mapping[str, Any],
        *,
        defer: bool = True,
    ) -> bool:
        """Keep a completing delivery; True when its caller must publish it as a call event
        (no tool is waiting for it and no other delivery did so already). While a tool waits
        for it, `defer` asks for the delivery to be processed again (ProcessLater) until the
        tool took it or its waiting mark expired."""
        assert tools[0].completion is not None
        value = key_text(search(tools[0].completion.match, payload))
        if value is None:
            return True  # nothing to match a waiting tool with: an event like any other
        base = _base(value, tenant)
        text = json.dumps({**record, "payload": payload}, default=str).encode()
        await self._store.set_if_absent(f"{base}:data", text, ttl_s=KEEP_S)
        await self._notifier.publish(base, b"1")
        ref = str(record.get("ref", "")).encode()
        claimed = await self._store.get(f"{base}:claim")
        if claimed is not None:
            return claimed == ref  # taken inline, by another delivery, or by this one before
        if await self._store.get(f"{base}:wait") == b"waiting":
            if not defer:
                return False  # kept in `:data` for the tool that is about to read it
            # The waiting tool answers with it. Processed again shortly all the same: if that
            # tool died waiting, its mark expires and the completion becomes a call event.
            raise ProcessLater(_RECHECK_S)
        if await self._store.set_if_absent(f"{base}:claim", ref, ttl_s=KEEP_S):
            return True
        return await self._store.get(f"{base}:claim") == ref  # this delivery, processed again

    # --- the tool's side ---

    async def settle(
        self,
        tool: Tool,
        result: ToolResult,
        ctx: CallContext,
        remaining_s: float,
        correlate: Correlate,
    ) -> ToolResult:
        """Record the start answer's correlation, then wait for its completion (see module)."""
        done = tool.completion
        assert done is not None
        key = done.key or next(iter(tool.correlate))
        value = key_text(search(tool.correlate.get(key, ""), result.result))
        if value is None or not ctx.linked:
            await correlate(tool, result.result, ctx)
            return result
        base = _base(value, ctx.tenant)
        wait = max(0.0, min(done.wait_s, remaining_s))
        woke = asyncio.Event()
        # Subscribed and marked waiting before the correlation key exists: a delivery that
        # finds the call then finds the waiter too; one that came earlier left its `:data`.
        subscription = await self._notifier.subscribe(base, lambda _m: woke.set(), woke.set)
        try:
            await self._store.set(f"{base}:wait", b"waiting", ttl_s=wait + _WAIT_MARGIN_S)
            await correlate(tool, result.result, ctx)
            deadline = time.monotonic() + wait
            raw = None
            while True:
                woke.clear()
                raw = await self._store.get(f"{base}:data")
                left = deadline - time.monotonic()
                if raw is not None or left <= 0:
                    break
                with contextlib.suppress(TimeoutError):  # the loop reads `:data` once more
                    async with asyncio.timeout(left):
                        await woke.wait()
            if raw is None:
                await self._store.set(f"{base}:wait", b"gone", ttl_s=KEEP_S)
                raw = await self._store.get(f"{base}:data")  # came while it gave up
            if raw is not None and await self._store.set_if_absent(
                f"{base}:claim", _INLINE, ttl_s=KEEP_S
            ):
                return await self._inline(tool, result, ctx, json.loads(raw))
        except StateError as exc:  # the completion still arrives as a call event
            log.warning("tool %s could not wait for its completion: %s", tool.name, exc)
        finally:
            await subscription.cancel()
        return self._pending(tool, result)

    async def _inline(
        self, tool: Tool, result: ToolResult, ctx: CallContext, record: dict[str, Any]
    ) -> ToolResult:
        done = tool.completion
        assert done is not None
        payload = record.get("payload")
        source = self._config.webhooks.get(done.webhook)
        rule = source.on.get(done.event) if source is not None else None
        if not record.get("applied") and rule is not None and rule.state:
            # It came before the call could be found by it: its state changes are made here.
            before = state_text(ctx)
            for name, expr in rule.state.items():
                found = search(expr, payload)
                if found is not None:
                    ctx.state[name] = found
            await self._calls.persist(ctx, before)
        say = record.get("say")
        if say is None and rule is not None and rule.say is not None:
            try:
                say = str(render(rule.say, payload, ctx))
            except Unfilled:
                say = None
        gained = search(done.result, payload)
        value: Any = result.result
        if isinstance(gained, Mapping) and isinstance(value, Mapping):
            value = {**value, **gained}
        elif gained is not None:
            value = {"start": value, "completion": gained}
        meta = {**result.meta, "completed_by": "webhook", "webhook_id": record.get("webhook_id")}
        return replace(result, result=value, say=say, meta=meta)

    @staticmethod
    def _pending(tool: Tool, result: ToolResult) -> ToolResult:
        done = tool.completion
        assert done is not None
        say = done.say or tool.say.pending or tool.say.timeout
        error = ErrorInfo("pending", PENDING_WORDS, False, {})
        meta = {**result.meta, "completion": "pending"}
        return replace(result, ok=False, error=error, say=say, meta=meta)
