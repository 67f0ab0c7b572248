"""Lean spans for `otlp_observer`: the same spans as `Tracing`, at a fraction of the cost.

The spans and attributes follow the GenAI conventions for tool execution and the HTTP client
conventions, exactly as `Tracing` sets them (see its module). A span is a small record until
it ends, then one tuple handed to `SpanShipper`; the current tool span lives in a context
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
from patchbay.observe._otlp_export import Attrs, Scalar, SpanShipper
from patchbay.observe._tracing import adopt_traceparent, release_traceparent

__all__ = ["OtlpTracer"]

_INTERNAL, _CLIENT = 1, 3
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_CACHED = 1024  # constant attribute sets kept (tools x endpoints), then built per span
# Seeded from the OS (and again in a forked child): ids must not repeat across replicas.
# Not SystemRandom: a system call per id costs more than the rest of a span.
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))
_now = time.time_ns


class _ToolSpan:
    __slots__ = ("const", "ended", "events", "extra", "name", "parent", "span_id", "start",
                 "token", "trace_hex", "trace_id")  # fmt: skip

    def __init__(
        self, trace_id: bytes, parent: bytes, name: str, const: Attrs, extra: list[Any]
    ) -> None:
        self.trace_id = trace_id
        self.trace_hex = trace_id.hex()
        self.span_id = _span_id()
        self.parent = parent
        self.name = name
        self.const = const
        self.extra: list[tuple[str, Scalar]] = extra
        self.events: list[tuple[int, str, Attrs]] | None = None
        self.start = _now()
        self.ended = False
        self.token: contextvars.Token[_ToolSpan | None] | None = None


class _AttemptSpan:
    __slots__ = ("const", "headers", "name", "parent", "resend", "span_id", "start", "trace_id")

    def __init__(self, trace_id: bytes, trace_hex: str, parent: bytes, name: str) -> None:
        self.trace_id = trace_id
        self.span_id = _span_id()
        self.parent = parent
        self.name = name
        self.const: Attrs = ()
        self.resend = 0
        # sampled: patchbay records every span it starts
        self.headers = {"traceparent": f"00-{trace_hex}-{self.span_id.hex()}-01"}
        self.start = _now()


_current: contextvars.ContextVar[_ToolSpan | None] = contextvars.ContextVar(
    "patchbay_tool_span", default=None
)


def _span_id() -> bytes:
    return (_ids.getrandbits(64) or 1).to_bytes(8, "big")


def _trace_id() -> bytes:
    return (_ids.getrandbits(128) or 1).to_bytes(16, "big")


def _parent() -> tuple[bytes, bytes]:
    """(trace id, parent span id) from the current OpenTelemetry span; a new trace if none."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        return context.trace_id.to_bytes(16, "big"), context.span_id.to_bytes(8, "big")
    return _trace_id(), b""


class OtlpTracer:
    """Records patchbay's spans and hands them, finished, to a `SpanShipper`."""

    __slots__ = ("_endpoints", "_propagator", "_shipper", "_tools")

    def __init__(self, shipper: SpanShipper) -> None:
        self._shipper = shipper
        self._tools: dict[tuple[str, str | None, str | None], Attrs] = {}
        self._endpoints: dict[tuple[str, str, str, str, str], Attrs] = {}
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
        const = self._tools.get(key)
        if const is None:
            const = _tool_attributes(tool, description, integration)
            if len(self._tools) < _MAX_CACHED:
                self._tools[key] = const
        extra: list[tuple[str, Scalar]] = []
        if tool_call_id:
            extra.append(("gen_ai.tool.call.id", tool_call_id))
        if call_id:
            extra.append(("gen_ai.conversation.id", call_id))
        trace_id, parent = _parent()
        span = _ToolSpan(trace_id, parent, f"execute_tool {tool}", const, extra)
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
            extra.append(("patchbay.attempts", attempts))
        if cached:
            extra.append(("patchbay.cached", True))
        if error_type is not None:
            extra.append(("error.type", error_type))
        self._shipper.add(
            (handle.trace_id, handle.span_id, handle.parent, handle.name, _INTERNAL,
             handle.start, _now(), handle.const, extra, events, error_type is not None)
        )  # fmt: skip

    def start_attempt(self, request: Request, resend_count: int) -> _AttemptSpan:
        """Open the client span of one attempt, a child of the current tool span."""
        tool = _current.get()
        if tool is not None:
            trace_id, trace_hex, parent = tool.trace_id, tool.trace_hex, tool.span_id
        else:  # a request outside a tool call: under whatever is current
            trace_id, parent = _parent()
            trace_hex = trace_id.hex()
        span = _AttemptSpan(
            trace_id, trace_hex, parent, f"{request.method} {request.path_template}"
        )
        scheme, _, netloc = request.url.split("/", 3)[:3]
        key = (request.integration, request.method, request.path_template, scheme, netloc)
        const = self._endpoints.get(key)
        if const is None:
            const = _endpoint_attributes(request, scheme.rstrip(":"), netloc)
            if len(self._endpoints) < _MAX_CACHED:
                self._endpoints[key] = const
        span.const = const
        span.resend = resend_count
        return span

    def end_attempt(self, handle: _AttemptSpan, status: int | None, outcome: str) -> None:
        """Close an attempt's span with its status, or why no answer came."""
        extra: list[tuple[str, Scalar]] = []
        if handle.resend > 0:
            extra.append(("http.request.resend_count", handle.resend))
        error_type: str | None = None
        if status is not None:
            extra.append(("http.response.status_code", status))
            if status >= 400:
                error_type = str(status)
        if outcome != "ok" and not outcome.startswith("http_"):
            error_type = outcome
        elif status is None:
            error_type = "cancelled"  # no answer and no failure: the call was cancelled
        if error_type is not None:
            extra.append(("error.type", error_type))
        self._shipper.add(
            (handle.trace_id, handle.span_id, handle.parent, handle.name, _CLIENT,
             handle.start, _now(), handle.const, extra, None, error_type is not None)
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
        tool.events.append((_now(), name, tuple(attrs)))

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
