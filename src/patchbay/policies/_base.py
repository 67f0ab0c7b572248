"""The policy pipeline: small async steps around one send, outermost first."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from patchbay.http._types import Request, Response
from patchbay.observe._events import Emitter, Event
from patchbay.spec._call import CallContext
from patchbay.spec._model import Integration, Tool

if TYPE_CHECKING:
    from patchbay.observe._trace_api import Tracer
    from patchbay.policies._prepare import Prepared


@dataclass(slots=True)
class Exchange:
    """Everything about one logical request that policies read and annotate."""

    tool: Tool
    integration: Integration  # effective settings: the tenant's overrides already applied
    call: CallContext
    deadline: float  # time.monotonic() by which the tool must have answered
    emitter: Emitter = field(default_factory=Emitter)
    attempts: int = 0  # upstream requests sent for this tool call, all retries included
    attempt: int = 1  # the attempt number of the request being sent now
    cached: bool = False
    stale: bool = False
    deduplicated: bool = False
    rate_wait_s: float = 0.0
    sent: bool = False  # a request left for the upstream: a write can no longer be abandoned
    # A write that may have reached the upstream with no definitive answer since (the retry
    # policy decides): its outcome is `pending`, never a failure.
    unsettled: Request | None = None
    notes: dict[str, object] = field(default_factory=dict)  # policy annotations for meta
    tracing: Tracer | None = None  # spans of attempts and policy events; None: tracing off
    # The API version this exchange speaks (the pinned or canary value), for events and metrics.
    version: str | None = None
    # Store results fetched ahead in one batch, by store key (see policies/_prepare.py).
    prepared: dict[str, Prepared] | None = None

    def remaining(self) -> float:
        """Seconds left in the tool's budget (may be negative)."""
        return self.deadline - time.monotonic()

    def event(self, event: Event) -> None:
        """Emit an event if anyone listens."""
        self.emitter.emit(event)


Send = Callable[[Request, Exchange], Awaitable[Response]]


class Policy(Protocol):
    """One step of the pipeline: do something, then (maybe) call `next`."""

    async def __call__(self, request: Request, exchange: Exchange, next: Send) -> Response:
        """Handle `request`, delegating to `next` for the rest of the pipeline."""
        ...


def chain(policies: list[Policy], send: Send) -> Send:
    """Compose policies (outermost first) around the final `send`."""
    handler = send
    for policy in reversed(policies):
        handler = _bind(policy, handler)
    return handler


def _bind(policy: Policy, next_: Send) -> Send:
    # A partial returns the policy's own coroutine: no extra coroutine frame per layer.
    return functools.partial(policy.__call__, next=next_)
