"""Event sinks: JSON lines (redacted) to a stream or logger, and an in-memory list for tests."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from typing import IO, Any

from patchbay.observe._events import Event
from patchbay.observe._redact import Redactor

# One encoder for every line: json.dumps with options builds a new encoder per call.
_encode = json.JSONEncoder(separators=(",", ":")).encode
_FIELDS = tuple(f.name for f in dataclasses.fields(Event) if f.name != "extra")


def event_dict(event: Event, redactor: Redactor | None = None) -> dict[str, Any]:
    """An event as a dict without empty fields; `extra` (the only free-form part) redacted.

    The other fields are identifiers from the config (tool, integration, path template) or
    numbers, never request data, so only `extra` needs scrubbing.
    """
    out: dict[str, Any] = {}
    for name in _FIELDS:
        value = getattr(event, name)
        if value is not None:
            out[name] = value
    if event.extra:
        out["extra"] = redactor.data(dict(event.extra)) if redactor else dict(event.extra)
    return out


class JsonLinesSink:
    """Writes each event as one redacted JSON line to a text stream (stderr by default)."""

    __slots__ = ("_redactor", "_stream")

    def __init__(self, stream: IO[str] | None = None, redactor: Redactor | None = None) -> None:
        self._stream = stream
        self._redactor = redactor or Redactor()

    def emit(self, event: Event) -> None:
        """Write one event."""
        line = _encode(event_dict(event, self._redactor))
        stream = self._stream or sys.stderr
        stream.write(line + "\n")


class LoggingSink:
    """Sends each event as a redacted JSON line to a stdlib logger (`patchbay.events`)."""

    __slots__ = ("_logger", "_redactor")

    def __init__(self, logger: logging.Logger | None = None, redactor: Redactor | None = None):
        self._logger = logger or logging.getLogger("patchbay.events")
        self._redactor = redactor or Redactor()

    def emit(self, event: Event) -> None:
        """Log one event at INFO (skipped cheaply when INFO is off)."""
        if self._logger.isEnabledFor(logging.INFO):
            data = event_dict(event, self._redactor)
            self._logger.info(_encode(data))


class MemorySink:
    """Keeps events in a list; for tests and the demo."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        """Keep one event."""
        self.events.append(event)

    def of_kind(self, kind: str) -> list[Event]:
        """The events of one kind."""
        return [e for e in self.events if e.kind == kind]
