"""Structured events for every tool call and every upstream attempt, handed to pluggable sinks."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import msgspec

EventKind = Literal[
    "tool_call",
    "attempt",
    "policy",
    "background",
    "state",
    "anomaly",
    "contract",
    "deprecation",
    "webhook_unmatched",
]


class Event(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """One thing that happened, with only safe, structured fields (no bodies, no headers).

    A frozen msgspec Struct rather than a dataclass: three or more are built and written on
    every tool call, and a Struct builds and encodes to JSON several times faster. Events hold
    only scalars and a small `extra` mapping, never themselves, so the cycle collector need not
    track them (`gc=False`).
    """

    kind: EventKind
    tool: str
    call_id: str | None = None
    integration: str | None = None
    tenant: str | None = None
    method: str | None = None
    path: str | None = None  # the path template, never the filled path
    status: int | None = None
    latency_ms: float | None = None
    attempt: int | None = None
    outcome: str | None = None  # ok, an error code, retry, cached, stale, ...
    extra: Mapping[str, Any] = msgspec.field(default_factory=dict)
    ts: float = msgspec.field(default_factory=time.time)


class EventSink(Protocol):
    """Receives events; must not block (queue or write quickly)."""

    def emit(self, event: Event) -> None:
        """Take one event."""
        ...


class Emitter:
    """Fans events out to sinks; a failing sink never fails a tool call."""

    __slots__ = ("_sinks",)

    def __init__(self, sinks: Sequence[EventSink] | None = None) -> None:
        self._sinks: list[EventSink] = list(sinks or [])

    def add(self, sink: EventSink) -> None:
        """Attach one more sink."""
        self._sinks.append(sink)

    def emit(self, event: Event) -> None:
        """Send `event` to every sink."""
        for sink in self._sinks:
            try:
                sink.emit(event)
            except Exception:  # observation must never break a call
                continue

    @property
    def active(self) -> bool:
        """Whether anyone listens (lets hot paths skip building events)."""
        return bool(self._sinks)
