"""The words every voice surface puts in a conversation for one call event.

A call event (a webhook, a completion, a background outcome, a reconciled write) reaches the
model as one system-style note; when the event carries words to speak (`say`), the note tells
the model they are being said (or must be said) now. One wording for every surface, so an
agent behaves the same on Pipecat, LiveKit, OpenAI Realtime and Vapi.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from patchbay.runtime import ToolRuntime
from patchbay.spec import CallContext

__all__ = ["CallEventLike", "event_note", "follow_call_events"]

log = logging.getLogger("patchbay.integrations")

# The note stays short: the model reads it on every later turn of the call.
_MAX_DETAILS = 2000
_MAX_RETRY_S = 30.0  # the longest pause between attempts to resubscribe


class CallEventLike(Protocol):
    """What a surface reads of a `CallEvent`."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def say(self) -> str | None: ...
    @property
    def data(self) -> Mapping[str, Any]: ...


def event_note(event: CallEventLike, *, spoken: bool = False) -> str:
    """The note for the model: what happened, and what to tell the caller.

    `spoken` says the surface speaks `say` itself (word for word), so the model is told the
    caller has heard it; otherwise the model is asked to say it now.
    """
    head = f"Event {event.event} ({event.kind}) reached this call."
    if event.say:
        if spoken:
            body = f" The caller is being told: {event.say}"
        else:
            body = f" Tell the caller now, in these words: {event.say}"
    else:
        body = " Nothing needs saying unless the caller asks about it."
    details = _details(event.data)
    return head + body + (f" Details: {details}" if details else "")


def _details(data: Mapping[str, Any]) -> str:
    if not data:
        return ""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= _MAX_DETAILS else text[: _MAX_DETAILS - 3] + "..."


async def follow_call_events(
    runtime: ToolRuntime,
    call: CallContext,
    deliver: Callable[[CallEventLike], Awaitable[None]],
    *,
    after: str | None = None,
    retry_s: float = 1.0,
) -> None:
    """Hand every event of `call` to `deliver`, in order, until the call ends or this is cancelled.

    A failing subscription (a store gone away) or a failing delivery is logged and the
    subscription resumes after the last event delivered: a surface never dies of one event.
    """
    last, pause = after, retry_s
    while True:
        try:
            async for event in runtime.call_events(call.id, tenant=call.tenant, after=last):
                pause = retry_s
                try:
                    await deliver(event)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # one event's failure must not end the others
                    log.warning(
                        "could not deliver call event %s: %s", event.event, type(exc).__name__
                    )
                last = event.id
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("call events subscription failed (%s); resuming", type(exc).__name__)
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_RETRY_S)
