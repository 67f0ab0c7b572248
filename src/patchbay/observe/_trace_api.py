"""What the runtime, the pipeline and the gateway call to trace: one small protocol.

Two implementations: `OtlpTracer` (what `otlp_observer` builds: lean spans exported over
OTLP/HTTP by patchbay itself) and `Tracing` (spans on any OpenTelemetry SDK tracer provider).
This module needs neither OpenTelemetry nor anything else: the layers above only see the protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from patchbay.http._types import Request

__all__ = ["AttemptHandle", "Tracer"]


class AttemptHandle(Protocol):
    """An open attempt span; `headers` (W3C `traceparent`) go upstream with the request."""

    @property
    def headers(self) -> Mapping[str, str]:
        """Headers that carry the span's context to the upstream."""
        ...


class Tracer(Protocol):
    """Spans of tool calls (`execute_tool`) and of upstream attempts (HTTP client spans)."""

    def start_tool(
        self,
        tool: str,
        *,
        description: str | None,
        call_id: str | None,
        tool_call_id: str | None,
        integration: str | None,
    ) -> Any:
        """Open `execute_tool {tool}` under the current context and make it current."""
        ...

    def end_tool(
        self,
        handle: Any,
        *,
        error_type: str | None,
        attempts: int | None = None,
        cached: bool = False,
    ) -> None:
        """Close the tool span `start_tool` opened (in the same task)."""
        ...

    def start_attempt(self, request: Request, resend_count: int) -> AttemptHandle:
        """Open the client span of one attempt, a child of the current tool span."""
        ...

    def end_attempt(self, handle: Any, status: int | None, outcome: str) -> None:
        """Close an attempt's span with its status or why no answer came."""
        ...

    def event(self, name: str, attempt: int | None, extra: Mapping[str, Any]) -> None:
        """A policy decision as an event of the current tool span."""
        ...

    def adopt(self, headers: Mapping[str, str]) -> object | None:
        """Make a caller's `traceparent` the current parent; a token for `release`."""
        ...

    def release(self, token: object | None) -> None:
        """Undo `adopt`."""
        ...
