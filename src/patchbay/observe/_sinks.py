"""Event sinks: JSON lines (redacted) to a stream or logger, and an in-memory list for tests."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import IO, Any

import msgspec

from patchbay.observe._events import Event
from patchbay.observe._redact import Redactor

# Omits empty fields (omit_defaults on Event); anything unexpected in `extra` becomes text.
_encode = msgspec.json.Encoder(enc_hook=str).encode
_FIELDS = tuple(name for name in Event.__struct_fields__ if name != "extra")
_PLAIN = (bool, int, float, type(None))


def _clean(event: Event, redactor: Redactor | None) -> Event:
    """The event with its `extra` (the only free-form part) redacted, when it needs it.

    The other fields are identifiers from the config (tool, integration, path template) or
    numbers, never request data, so only `extra` needs scrubbing; flags and counts under
    harmless keys (the usual `extra`) are left as they are without copying.
    """
    extra = event.extra
    if not extra or redactor is None or _harmless(extra):
        return event
    return msgspec.structs.replace(event, extra=redactor.data(dict(extra)))


def _harmless(extra: Mapping[str, Any]) -> bool:
    return all(type(v) in _PLAIN and not Redactor.sensitive(k) for k, v in extra.items())


def event_dict(event: Event, redactor: Redactor | None = None) -> dict[str, Any]:
    """An event as a dict without empty fields; `extra` redacted."""
    event = _clean(event, redactor)
    out: dict[str, Any] = {}
    for name in _FIELDS:
        value = getattr(event, name)
        if value is not None:
            out[name] = value
    if event.extra:
        out["extra"] = dict(event.extra)
    return out


def event_json(event: Event, redactor: Redactor | None = None) -> str:
    """An event as one JSON line (no newline), without empty fields; `extra` redacted."""
    return _encode(_clean(event, redactor)).decode()


class JsonLinesSink:
    """Writes each event as one redacted JSON line to a text stream (stderr by default)."""

    __slots__ = ("_redactor", "_stream")

    def __init__(self, stream: IO[str] | None = None, redactor: Redactor | None = None) -> None:
        self._stream = stream
        self._redactor = redactor or Redactor()

    def emit(self, event: Event) -> None:
        """Write one event."""
        line = event_json(event, self._redactor)
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
            self._logger.info(event_json(event, self._redactor))


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
