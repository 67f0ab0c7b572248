"""Observation: structured events, redaction and sinks."""

from patchbay.observe._events import Emitter, Event, EventKind, EventSink
from patchbay.observe._redact import REDACTED, Redactor
from patchbay.observe._sinks import JsonLinesSink, LoggingSink, MemorySink, event_dict

__all__ = [
    "REDACTED",
    "Emitter",
    "Event",
    "EventKind",
    "EventSink",
    "JsonLinesSink",
    "LoggingSink",
    "MemorySink",
    "Redactor",
    "event_dict",
]
