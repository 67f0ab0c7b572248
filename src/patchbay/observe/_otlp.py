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
from collections.abc import Mapping
from typing import Any

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
)
from patchbay.observe._tracing import adopt_traceparent, release_traceparent

__all__ = ["OtlpTracer"]

_INTERNAL, _CLIENT = 1, 3
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_CACHED = 1024  # templates kept (tools x endpoints), then built per span
# Seeded from the OS (and again in a forked child): ids must not repeat across replicas.
# Not SystemRandom: a system call per id costs more than the rest of a span.
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))
_now = time.time_ns


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


_STATUS = _Repeated("http.response.status_code", 600)
_RESEND = _Repeated("http.request.resend_count", 32)
_ATTEMPTS = _Repeated("patchbay.attempts", 32)
_ERROR = _Repeated("error.type")
_CACHED = encode_attribute("patchbay.cached", True)


def _span_id() -> bytes:
    return (_ids.getrandbits(64) or 1).to_bytes(8, "big")


class _ToolSpan:
    __slots__ = ("ended", "events", "extra", "parent", "span_id", "start", "template",
                 "token", "trace_hex", "trace_id")  # fmt: skip

    def __init__(
        self, trace_id: bytes, parent: bytes, template: SpanTemplate, extra: bytes
    ) -> None:
        self.trace_id = trace_id
        self.trace_hex = trace_id.hex()
        self.span_id = _span_id()
        self.parent = parent
        self.template = template
        self.extra = extra  # encoded attributes known at the start
        self.events: list[bytes] | None = None  # encoded events
        self.start = _now()
        self.ended = False
        self.token: contextvars.Token[_ToolSpan | None] | None = None


class _AttemptSpan:
    __slots__ = ("headers", "parent", "resend", "span_id", "start", "template", "trace_id")

    def __init__(
        self, trace_id: bytes, trace_hex: str, parent: bytes, template: SpanTemplate, resend: int
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id = _span_id()
        self.parent = parent
        self.template = template
        self.resend = resend
        # sampled: patchbay records every span it starts
        self.headers = {"traceparent": f"00-{trace_hex}-{span_id.hex()}-01"}
        self.start = _now()


_current: contextvars.ContextVar[_ToolSpan | None] = contextvars.ContextVar(
    "patchbay_tool_span", default=None
)


def _parent() -> tuple[bytes, bytes]:
    """(trace id, parent span id) from the current OpenTelemetry span; a new trace if none."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        return context.trace_id.to_bytes(16, "big"), context.span_id.to_bytes(8, "big")
    return (_ids.getrandbits(128) or 1).to_bytes(16, "big"), b""  # a new trace


class OtlpTracer:
    """Records patchbay's spans and hands them, finished and encoded, to a `SpanShipper`."""

    __slots__ = ("_endpoints", "_propagator", "_shipper", "_tools")

    def __init__(self, shipper: SpanShipper) -> None:
        self._shipper = shipper
        self._tools: dict[tuple[str, str | None, str | None], SpanTemplate] = {}
        self._endpoints: dict[tuple[str, str, str, str, str], SpanTemplate] = {}
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
        extra = b""
        if tool_call_id:
            extra = encode_attribute("gen_ai.tool.call.id", tool_call_id)
        if call_id:
            extra += encode_attribute("gen_ai.conversation.id", call_id)
        trace_id, parent = _parent()
        span = _ToolSpan(trace_id, parent, template, extra)
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
            encode_span(handle.trace_id, handle.span_id, handle.parent, handle.template,
                        handle.start, _now(), extra, error_type is not None)
        )  # fmt: skip

    def start_attempt(self, request: Request, resend_count: int) -> _AttemptSpan:
        """Open the client span of one attempt, a child of the current tool span."""
        tool = _current.get()
        if tool is not None:
            trace_id, trace_hex, parent = tool.trace_id, tool.trace_hex, tool.span_id
        else:  # a request outside a tool call: under whatever is current
            trace_id, parent = _parent()
            trace_hex = trace_id.hex()
        scheme, _, netloc = request.url.split("/", 3)[:3]
        key = (request.integration, request.method, request.path_template, scheme, netloc)
        template = self._endpoints.get(key)
        if template is None:
            template = SpanTemplate(
                f"{request.method} {request.path_template}",
                _CLIENT,
                _endpoint_attributes(request, scheme.rstrip(":"), netloc),
            )
            if len(self._endpoints) < _MAX_CACHED:
                self._endpoints[key] = template
        return _AttemptSpan(trace_id, trace_hex, parent, template, resend_count)

    def end_attempt(self, handle: _AttemptSpan, status: int | None, outcome: str) -> None:
        """Close an attempt's span with its status, or why no answer came."""
        extra = _RESEND[handle.resend] if handle.resend > 0 else b""
        error_type: str | None = None
        if status is not None:
            extra += _STATUS[status]
            if status >= 400:
                error_type = str(status)
        if outcome != "ok" and not outcome.startswith("http_"):
            error_type = outcome
        elif status is None:
            error_type = "cancelled"  # no answer and no failure: the call was cancelled
        if error_type is not None:
            extra += _ERROR[error_type]
        self._shipper.add(
            encode_span(handle.trace_id, handle.span_id, handle.parent, handle.template,
                        handle.start, _now(), extra, error_type is not None)
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


def _endpoint_attributes(request: Request, scheme: str, netloc: str) -> Attrs:
    host, port = _host_port(netloc.rpartition("@")[2], scheme)
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
