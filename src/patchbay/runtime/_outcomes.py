"""Durable records of writes that finished after their caller moved on, and their events."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from patchbay._errors import ToolError
from patchbay.http._types import Response
from patchbay.observe._events import Emitter, Event
from patchbay.policies._classify import error_for_status
from patchbay.spec._call import call_scoped
from patchbay.spec._model import Tool
from patchbay.state import StateError, StateStore
from patchbay.transform import transform_response

log = logging.getLogger("patchbay.runtime")

# A day: long enough for the agent, a follow-up call or an operator to look the outcome up.
OUTCOME_TTL_S = 86400.0

# adopted: finished after its caller gave up; reconciled: confirmed by resending; outbox.
Kind = Literal["adopted", "reconciled", "outbox"]
# Told of every recorded outcome, with the call's tenant (the runtime makes it a call event).
Listener = Callable[[dict[str, Any], str | None], Awaitable[None]]


def outcome_key(call_id: str, key: str, tenant: str | None = None) -> str:
    """Where the outcome of one write of a call (of `tenant`) lives: by its idempotency key or
    outbox reference."""
    return f"{call_scoped('outcome', call_id, tenant)}:{key}"


class Outcomes:
    """Records how a background write ended (store, per call and key) and emits it as an event."""

    __slots__ = ("_emitter", "_store", "listener")

    def __init__(self, store: StateStore, emitter: Emitter) -> None:
        self._store = store
        self._emitter = emitter
        self.listener: Listener | None = None

    async def record(
        self,
        kind: Kind,
        *,
        tool: str,
        call_id: str,
        key: str,
        outcome: str,
        integration: str | None = None,
        tenant: str | None = None,
        status: int | None = None,
        result: Any = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store the outcome durably, emit a `background` event and tell the listener (the
        call's events); never raises StateError."""
        record: dict[str, Any] = {
            "kind": kind,
            "tool": tool,
            "call_id": call_id,
            "key": key,
            "ok": outcome == "ok",
            "outcome": outcome,
            "status": status,
            "result": result,
            "finished_at": time.time(),
            **(extra or {}),
        }
        try:
            data = json.dumps(record, separators=(",", ":"), default=str).encode()
            await self._store.set(outcome_key(call_id, key, tenant), data, ttl_s=OUTCOME_TTL_S)
        except StateError:
            # The event below still tells observers; losing the record must not lose the write.
            log.warning("could not record the outcome of %s for call %s", tool, call_id)
        self._emitter.emit(
            Event(
                kind="background",
                tool=tool,
                call_id=call_id,
                integration=integration,
                tenant=tenant,
                status=status,
                outcome=outcome,
                extra={"source": kind, "key": key, **(extra or {})},
            )
        )
        if self.listener is not None:
            try:
                await self.listener(record, tenant)
            except Exception as exc:  # the outcome is recorded; telling the call is best effort
                why = type(exc).__name__
                log.warning("could not tell call %s how %s ended: %s", call_id, tool, why)
        return record

    async def get(self, call_id: str, key: str, tenant: str | None = None) -> dict[str, Any] | None:
        """The recorded outcome of a write of `tenant`'s call, or None if none finished (or it
        expired)."""
        raw = await self._store.get(outcome_key(call_id, key, tenant))
        if raw is None:
            return None
        found: dict[str, Any] = json.loads(raw)
        return found


def describe_response(response: Response, tool: Tool) -> tuple[str, Any]:
    """The outcome word of a finished write's response, and its transformed result when 2xx.

    A 2xx whose body is not JSON proves nothing (a proxy may have made it up): `unresolved`.
    """
    if response.status >= 300:
        return error_for_status(response.status, "").code.value, None
    if not response.body:
        return "ok", None
    try:
        body = response.json()
    except ToolError:
        return "unresolved", None
    if tool.request is None:
        return "ok", None  # a handler's single request: its own result is not the tool's
    try:
        return "ok", transform_response(tool.response, body)
    except Exception:  # the charge stands whatever the transform thinks of the body
        return "ok", None
