"""Observation: structured events, redaction and sinks."""

from patchbay.observe._audit import AuditSink
from patchbay.observe._events import Emitter, Event, EventKind, EventSink
from patchbay.observe._metrics import BREAKER_STATES, METRICS_CONTENT_TYPE, PrometheusSink
from patchbay.observe._redact import REDACTED, Redactor
from patchbay.observe._sinks import JsonLinesSink, LoggingSink, MemorySink, event_dict

__all__ = [
    "BREAKER_STATES",
    "METRICS_CONTENT_TYPE",
    "REDACTED",
    "AuditSink",
    "Emitter",
    "Event",
    "EventKind",
    "EventSink",
    "JsonLinesSink",
    "LoggingSink",
    "MemorySink",
    "PrometheusSink",
    "Redactor",
    "event_dict",
]
