"""Lean spans for `otlp_observer`: the same spans as `Tracing`, at a fraction of the cost.

The spans and attributes follow the GenAI conventions for tool execution and the HTTP client
conventions, exactly as `Tracing` sets them (see its module). A span is a small record until
it ends, then encoded and handed to `SpanShipper`; the current tool span lives in a context
variable of patchbay's own, and the parent of a tool span is the current OpenTelemetry span
(a caller's `traceparent` the gateway adopted, or the embedding application's own span).
"""

from __future__ import annotations

import contextvars
import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from patchbay.http._types import Request
from patchbay.observe._otlp_export import (
    Attrs,
    Scalar,
    SpanShipper,
    SpanTemplate,
    encode_attribute,
    encode_event,
    encode_span,
    length_prefix,
    span_ids,
)
from patchbay.observe._tracing import adopt_traceparent, attempt_error, release_traceparent

__all__ = ["OtlpTracer"]

_INTERNAL, _CLIENT = 1, 3
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_CACHED = 1024  # templates kept (tools x endpoints), then built per span
# Seeded from the OS (and again in a forked child): ids must not repeat across replicas.
# Not SystemRandom: a system call per id costs more than the rest of a span.
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))
_random = _ids.getrandbits
_now = time.time_ns
# The key OpenTelemetry keeps the current span under, found through its public API: one
# lookup in the current context instead of the four calls of `trace.get_current_span`.
_SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, otel_context.Context())))
_otel_context = otel_context.get_current


class _Repeated(dict[Scalar, bytes]):
    """Encoded attributes whose values repeat (statuses, counts, error codes): each value
    encoded once, looked up after; past `limit` values, the rest are encoded every time."""

    __slots__ = ("_key", "_limit")

    def __init__(self, key: str, limit: int = 256) -> None:
        super().__init__()
        self._key = key
        self._limit = limit

    def __missing__(self, value: Scalar) -> bytes:
        found = encode_attribute(self._key, value)
        if len(self) < self._limit:
            self[value] = found
        return found


def _text_attribute(key: str) -> Callable[[str], bytes]:
    """An encoder of one string attribute whose key is fixed (ids, a new value each call):
    the key encoded once, and a value short enough for one-byte lengths formatted in one step."""
    head = b"\x0a" + length_prefix(len(key.encode())) + key.encode() + b"\x12"
    short = b"\x4a%c" + head.replace(b"%", b"%%") + b"%c\x0a%c%s"
    fixed = len(head) + 3  # the pair's length beyond the value's

    def encode(value: str) -> bytes:
        text = value.encode("utf-8", "replace")
        size = len(text)
        if size + fixed < 128:
            return short % (size + fixed, size + 2, size, text)
        any_value = b"\x0a" + length_prefix(size) + text
        pair = head + length_prefix(len(any_value)) + any_value
        return b"\x4a" + length_prefix(len(pair)) + pair

    return encode


_STATUS = _Repeated("http.response.status_code", 600)
_RESEND = _Repeated("http.request.resend_count", 32)
_ATTEMPTS = _Repeated("patchbay.attempts", 32)
_ERROR = _Repeated("error.type")
_CACHED = encode_attribute("patchbay.cached", True)
_TOOL_CALL_ID = _text_attribute("gen_ai.tool.call.id")
_CONVERSATION_ID = _text_attribute("gen_ai.conversation.id")


# Spans are msgspec structs outside the garbage collector, built without a Python-level
# __init__: at 64 calls in flight the collector's passes and frames cost more than the spans.
# No span is left in a reference cycle: the one through its context token (the task's
# context holds the span while it is current) is broken when the span ends.
class _ToolSpan(msgspec.Struct, gc=False):
    ids: bytes  # encoded trace and parent ids (`span_ids`)
    span_id: bytes
    child_ids: bytes  # the ids of its attempts' spans: this trace, this span as parent
    traceparent: str  # "00-{trace id}-" for its attempts' `traceparent`
    template: SpanTemplate
    extra: bytes  # encoded attributes known at the start
    start: int
    events: list[bytes] | None = None  # encoded events
    ended: bool = False
    token: contextvars.Token[_ToolSpan | None] | None = None


class _AttemptSpan(msgspec.Struct, gc=False):
    ids: bytes
    span_id: bytes
    template: SpanTemplate
    resend: int
    headers: dict[str, str]  # its W3C `traceparent`, sent upstream
    start: int


_current: contextvars.ContextVar[_ToolSpan | None] = contextvars.ContextVar(
    "patchbay_tool_span", default=None
)


def _trace() -> tuple[bytes, bytes]:
    """(trace id, encoded ids) under the current OpenTelemetry span; a new trace if none."""
    span: trace.Span | None = _otel_context().get(_SPAN_KEY)  # type: ignore[assignment]
    if span is not None:
        context = span.get_span_context()
        if context.is_valid:
            trace_id = context.trace_id.to_bytes(16, "big")
            return trace_id, span_ids(trace_id, context.span_id.to_bytes(8, "big"))
    trace_id = (_random(128) or 1).to_bytes(16, "big")
    return trace_id, b"\x0a\x10" + trace_id  # a root: no parent


class OtlpTracer:
    """Records patchbay's spans and hands them, finished and encoded, to a `SpanShipper`."""

    __slots__ = ("_endpoints", "_propagator", "_shipper", "_tools")

    def __init__(self, shipper: SpanShipper) -> None:
        self._shipper = shipper
        self._tools: dict[tuple[str, str | None, str | None], SpanTemplate] = {}
        self._endpoints: dict[tuple[str, str, str, str], SpanTemplate] = {}
        self._propagator = TraceContextTextMapPropagator()

    def start_tool(
        self,
        tool: str,
        *,
        description: str | None,
        call_id: str | None,
        tool_call_id: str | None,
        integration: str | None,
    ) -> _ToolSpan:
        """Open `execute_tool {tool}` under the current context and make it current."""
        key = (tool, description, integration)
        template = self._tools.get(key)
        if template is None:
            template = SpanTemplate(
                f"execute_tool {tool}", _INTERNAL, _tool_attributes(tool, description, integration)
            )
            if len(self._tools) < _MAX_CACHED:
                self._tools[key] = template
        extra = _TOOL_CALL_ID(tool_call_id) if tool_call_id else b""
        if call_id:
            extra += _CONVERSATION_ID(call_id)
        trace_id, ids = _trace()
        span_id = (_random(64) or 1).to_bytes(8, "big")
        span = _ToolSpan(
            ids, span_id, span_ids(trace_id, span_id), f"00-{trace_id.hex()}-", template, extra,
            _now(),
        )  # fmt: skip
        span.token = _current.set(span)
        return span

    def end_tool(
        self,
        handle: _ToolSpan,
        *,
        error_type: str | None,
        attempts: int | None = None,
        cached: bool = False,
    ) -> None:
        """Close a tool span: `error.type` is the result's error code (never its words)."""
        if handle.token is not None:
            _current.reset(handle.token)
            handle.token = None
        # Events after the end (a write confirmed in the background) are not the span's.
        events, handle.events = handle.events, None
        handle.ended = True
        extra = handle.extra
        if attempts is not None:
            extra += _ATTEMPTS[attempts]
        if cached:
            extra += _CACHED
        if error_type is not None:
            extra += _ERROR[error_type]
        if events:
            extra += b"".join(events)
        self._shipper.add(
            encode_span(handle.ids, handle.span_id, handle.template, handle.start, _now(), extra,
                        error_type is not None)
        )  # fmt: skip

    def start_attempt(self, request: Request, resend_count: int) -> _AttemptSpan:
        """Open the client span of one attempt, a child of the current tool span."""
        url = request.url
        end = url.find("/", url.find("//") + 2)  # the scheme and host: templates are per origin
        origin = url[:end] if end > 0 else url
        key = (request.integration, request.method, request.path_template, origin)
        template = self._endpoints.get(key)
        if template is None:
            template = SpanTemplate(
                f"{request.method} {request.path_template}", _CLIENT, _endpoint_attributes(request)
            )
            if len(self._endpoints) < _MAX_CACHED:
                self._endpoints[key] = template
        tool = _current.get()
        if tool is not None:
            ids, traceparent = tool.child_ids, tool.traceparent
        else:  # a request outside a tool call: under whatever is current
            trace_id, ids = _trace()
            traceparent = f"00-{trace_id.hex()}-"
        span_id = (_random(64) or 1).to_bytes(8, "big")
        # sampled ("-01"): patchbay records every span it starts
        headers = {"traceparent": f"{traceparent}{span_id.hex()}-01"}
        return _AttemptSpan(ids, span_id, template, resend_count, headers, _now())

    def end_attempt(self, handle: _AttemptSpan, status: int | None, outcome: str) -> None:
        """Close an attempt's span with its status, or why no answer came."""
        if outcome == "ok" and status is not None and status < 400 and not handle.resend:
            extra, error_type = _STATUS[status], None  # the usual answer
        else:
            extra, error_type = _failed_attempt(handle.resend, status, outcome)
        self._shipper.add(
            encode_span(handle.ids, handle.span_id, handle.template, handle.start, _now(), extra,
                        error_type is not None)
        )  # fmt: skip

    def event(self, name: str, attempt: int | None, extra: Mapping[str, Any]) -> None:
        """A policy decision as an event of the current tool span (scalar fields only)."""
        tool = _current.get()
        if tool is None or tool.ended:
            return
        attrs = [
            (f"patchbay.{key}", value)
            for key, value in extra.items()
            if isinstance(value, str | bool | int | float)
        ]
        if attempt is not None:
            attrs.append(("patchbay.attempt", attempt))
        if tool.events is None:
            tool.events = []
        tool.events.append(encode_event(_now(), name, attrs))

    def adopt(self, headers: Mapping[str, str]) -> object | None:
        """Make a caller's W3C `traceparent` the current parent; a token for `release`."""
        return adopt_traceparent(self._propagator, headers)

    def release(self, token: object | None) -> None:
        """Undo `adopt`."""
        release_traceparent(token)


def _failed_attempt(resend: int, status: int | None, outcome: str) -> tuple[bytes, str | None]:
    """The encoded attributes of an attempt resent, failed or cancelled, and its error type."""
    extra = _RESEND[resend] if resend > 0 else b""
    if status is not None:
        extra += _STATUS[status]
    error_type = attempt_error(status, outcome)
    if error_type is not None:
        extra += _ERROR[error_type]
    return extra, error_type


def _tool_attributes(tool: str, description: str | None, integration: str | None) -> Attrs:
    attrs: list[tuple[str, Scalar]] = [
        ("gen_ai.operation.name", "execute_tool"),
        ("gen_ai.tool.name", tool),
        ("gen_ai.tool.type", "function"),  # the model chose the arguments, patchbay runs it
    ]
    if description:
        attrs.append(("gen_ai.tool.description", description))
    if integration:
        attrs.append(("patchbay.integration", integration))
    return tuple(attrs)


def _endpoint_attributes(request: Request) -> Attrs:
    parts = urlsplit(request.url)
    scheme = parts.scheme
    host, port = _host_port(parts.netloc.rpartition("@")[2], scheme)
    attrs: list[tuple[str, Scalar]] = [
        ("http.request.method", request.method),
        ("url.template", request.path_template),
        ("url.scheme", scheme),
        ("server.address", host),
    ]
    if port is not None:
        attrs.append(("server.port", port))
    attrs.append(("patchbay.integration", request.integration))
    return tuple(attrs)


def _host_port(hostport: str, scheme: str) -> tuple[str, int | None]:
    """Host and port of `host:port` or `[v6]:port`, the scheme's port when none is given."""
    host, sep, port = hostport.rpartition(":")
    if not sep or "]" in port:  # no port (a bare IPv6 literal ends with "]")
        host, port = hostport, ""
    host = host.strip("[]")
    if port.isdigit():
        return host, int(port)
    return host, _DEFAULT_PORTS.get(scheme)
