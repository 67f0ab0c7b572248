"""OpenTelemetry spans for tool calls and upstream attempts (the `otel` extra).

Follows the GenAI semantic conventions for tool execution and the HTTP client conventions:

    execute_tool {tool}          INTERNAL  one per tool call (policy decisions as its events)
      {METHOD} {url.template}    CLIENT    one per upstream attempt, `traceparent` sent with it

Only safe values become attributes: tool, integration and path template names, methods,
statuses, error codes and counts. Never an argument value, a filled URL (`url.full` would carry
the caller's number in a query), a header, a secret or an idempotency key.

Imported only when tracing is asked for: `opentelemetry-api` is an optional dependency.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from patchbay import __version__
from patchbay.http._types import Request

__all__ = [
    "AttemptSpan",
    "ToolSpan",
    "Tracing",
    "adopt_traceparent",
    "attempt_error",
    "release_traceparent",
]

_SCOPE = "patchbay"
_TRACEPARENT = "traceparent"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_Scalar = str | bool | int | float


class ToolSpan:
    """An `execute_tool` span, current for the tool call's code until `Tracing.end_tool`."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span, token: object) -> None:
        self.span = span
        self.token = token


class AttemptSpan:
    """A client span of one upstream attempt, and the headers that carry it upstream."""

    __slots__ = ("headers", "span")

    def __init__(self, span: Span, headers: dict[str, str]) -> None:
        self.span = span
        self.headers = headers


class Tracing:
    """Starts and ends patchbay's spans on a tracer provider (default: the global one)."""

    __slots__ = ("_propagator", "_tracer")

    def __init__(self, provider: TracerProvider | None = None) -> None:
        source = provider if provider is not None else trace.get_tracer_provider()
        self._tracer = source.get_tracer(_SCOPE, __version__)
        self._propagator = TraceContextTextMapPropagator()

    def start_tool(
        self,
        tool: str,
        *,
        description: str | None,
        call_id: str | None,
        tool_call_id: str | None,
        integration: str | None,
    ) -> ToolSpan:
        """Open `execute_tool {tool}` as a child of the current context and make it current."""
        attributes: dict[str, _Scalar] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            # The model chose the arguments and patchbay runs the function for it.
            "gen_ai.tool.type": "function",
        }
        if description:
            attributes["gen_ai.tool.description"] = description
        if tool_call_id:
            attributes["gen_ai.tool.call.id"] = tool_call_id
        if call_id:
            attributes["gen_ai.conversation.id"] = call_id
        if integration:
            attributes["patchbay.integration"] = integration
        span = self._tracer.start_span(
            f"execute_tool {tool}", kind=SpanKind.INTERNAL, attributes=attributes
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        return ToolSpan(span, token)

    def end_tool(
        self,
        handle: ToolSpan,
        *,
        error_type: str | None,
        attempts: int | None = None,
        cached: bool = False,
    ) -> None:
        """Close a tool span: `error.type` is the result's error code (never its words)."""
        otel_context.detach(handle.token)  # type: ignore[arg-type]
        span = handle.span
        if span.is_recording():
            if attempts is not None:
                span.set_attribute("patchbay.attempts", attempts)
            if cached:
                span.set_attribute("patchbay.cached", True)
            if error_type is not None:
                span.set_attribute("error.type", error_type)
                span.set_status(StatusCode.ERROR)
        span.end()

    def start_attempt(self, request: Request, resend_count: int) -> AttemptSpan:
        """Open the client span of one attempt (child of the current span) and its headers."""
        parts = urlsplit(request.url)
        method = request.method
        attributes: dict[str, _Scalar] = {
            "http.request.method": method,
            "url.template": request.path_template,
            "url.scheme": parts.scheme,
            "server.address": parts.hostname or "",
            "patchbay.integration": request.integration,
        }
        try:
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            port = None
        if port is not None:
            attributes["server.port"] = port
        if resend_count > 0:
            attributes["http.request.resend_count"] = resend_count
        span = self._tracer.start_span(
            f"{method} {request.path_template}", kind=SpanKind.CLIENT, attributes=attributes
        )
        headers: dict[str, str] = {}
        self._propagator.inject(headers, context=trace.set_span_in_context(span))
        return AttemptSpan(span, headers)

    @staticmethod
    def end_attempt(handle: AttemptSpan, status: int | None, outcome: str) -> None:
        """Close an attempt's span with its status, or why no answer came.

        `outcome` is the attempt event's: ok, http_NNN, timeout, network_error, too_large.
        """
        span = handle.span
        if span.is_recording():
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            error_type = attempt_error(status, outcome)
            if error_type is not None:
                span.set_attribute("error.type", error_type)
                span.set_status(StatusCode.ERROR)
        span.end()

    @staticmethod
    def event(name: str, attempt: int | None, extra: Mapping[str, Any]) -> None:
        """A policy decision (retry, breaker, cache...) as an event of the current span.

        Only scalar fields are kept, named `patchbay.*`: policy events carry durations,
        states and reasons, never request data.
        """
        span = trace.get_current_span()
        if not span.is_recording():
            return
        attributes: dict[str, _Scalar] = {
            f"patchbay.{key}": value
            for key, value in extra.items()
            if isinstance(value, str | bool | int | float)
        }
        if attempt is not None:
            attributes["patchbay.attempt"] = attempt
        span.add_event(name, attributes)

    def adopt(self, headers: Mapping[str, str]) -> object | None:
        """Make a caller's W3C `traceparent` the current parent; a token for `release`."""
        return adopt_traceparent(self._propagator, headers)

    def release(self, token: object | None) -> None:
        """Undo `adopt` (a None token is nothing to undo)."""
        release_traceparent(token)


def attempt_error(status: int | None, outcome: str) -> str | None:
    """An attempt's `error.type`: why no answer came, else its status from 400 up."""
    if outcome != "ok" and not outcome.startswith("http_"):
        return outcome  # timeout, network_error, too_large
    if status is None:
        return "cancelled"  # no answer and no failure: the call was cancelled
    return str(status) if status >= 400 else None


def adopt_traceparent(
    propagator: TraceContextTextMapPropagator, headers: Mapping[str, str]
) -> object | None:
    """Attach the context of a caller's W3C `traceparent`; a token for `release_traceparent`.

    None when the headers carry no valid one, or when a span is already current (an ASGI
    instrumentation's server span, itself a child of the caller's).
    """
    if headers.get(_TRACEPARENT) is None:
        return None
    if trace.get_current_span().get_span_context().is_valid:
        return None
    found = propagator.extract(headers)
    if not trace.get_current_span(found).get_span_context().is_valid:
        return None
    return otel_context.attach(found)


def release_traceparent(token: object | None) -> None:
    """Detach what `adopt_traceparent` attached (a None token is nothing to undo)."""
    if token is not None:
        otel_context.detach(token)  # type: ignore[arg-type]
