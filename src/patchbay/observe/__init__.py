"""Observation: structured events, redaction and sinks."""

from typing import TYPE_CHECKING

from patchbay._lazy import lazy_exports

if TYPE_CHECKING:
    from patchbay.observe._audit import AuditSink
    from patchbay.observe._events import Emitter, Event, EventKind, EventSink
    from patchbay.observe._metrics import BREAKER_STATES, METRICS_CONTENT_TYPE, PrometheusSink
    from patchbay.observe._otel import OtlpObserver, otlp_observer
    from patchbay.observe._redact import REDACTED, Redactor
    from patchbay.observe._sinks import JsonLinesSink, LoggingSink, MemorySink, event_dict
    from patchbay.observe._tracing import Tracing

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
    "OtlpObserver",
    "PrometheusSink",
    "Redactor",
    "Tracing",
    "event_dict",
    "otlp_observer",
]

# Each name's module is imported on first use, for start-up time (see patchbay._lazy).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "._audit": ("AuditSink",),
        "._events": (
            "Emitter",
            "Event",
            "EventKind",
            "EventSink",
        ),
        "._metrics": (
            "BREAKER_STATES",
            "METRICS_CONTENT_TYPE",
            "PrometheusSink",
        ),
        "._otel": (
            "OtlpObserver",
            "otlp_observer",
        ),
        "._redact": (
            "REDACTED",
            "Redactor",
        ),
        "._sinks": (
            "JsonLinesSink",
            "LoggingSink",
            "MemorySink",
            "event_dict",
        ),
        "._tracing": ("Tracing",),
    },
)
