"""OpenTelemetry metrics from patchbay's events, beside (or instead of) Prometheus.

An event sink: tool calls become `patchbay.tool.duration`, upstream attempts the HTTP client
convention's `http.client.request.duration`, policy decisions `patchbay.policy.decisions`.
Attributes are names from the config and bounded codes; tool names a caller made up are
counted under one value, as the Prometheus sink does. Imported only with the `otel` extra.
"""

from __future__ import annotations

from opentelemetry.metrics import MeterProvider

from patchbay import __version__
from patchbay.observe._events import Event

__all__ = ["OtelMetricsSink"]

_MAX_NAMES = 256  # distinct tool and path names kept as attribute values
_OTHER = "_other"
_Attributes = dict[str, str | int]


class OtelMetricsSink:
    """Records events on OTel instruments; `emit` never blocks (the SDK aggregates in memory)."""

    __slots__ = ("_attempts", "_decisions", "_names", "_tools")

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter("patchbay", __version__)
        self._tools = meter.create_histogram(
            "patchbay.tool.duration", unit="s", description="Duration of tool calls."
        )
        self._attempts = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests to the integrations.",
        )
        self._decisions = meter.create_counter(
            "patchbay.policy.decisions",
            unit="{decision}",
            description="Retries, breaker, cache, quota and rate-limit decisions.",
        )
        self._names: set[str] = set()

    def _bounded(self, name: str) -> str:
        if name in self._names:
            return name
        if len(self._names) >= _MAX_NAMES:
            return _OTHER
        self._names.add(name)
        return name

    def emit(self, event: Event) -> None:
        """Record one event."""
        kind = event.kind
        if kind == "tool_call":
            attrs: _Attributes = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": self._bounded(event.tool),
            }
            if event.outcome and event.outcome != "ok":
                attrs["error.type"] = event.outcome
            if event.latency_ms is not None:
                self._tools.record(event.latency_ms / 1000.0, attrs)
        elif kind == "attempt":
            attrs = {"http.request.method": event.method or "_OTHER"}
            if event.path is not None:
                attrs["url.template"] = self._bounded(event.path)
            if event.integration is not None:
                attrs["patchbay.integration"] = event.integration
            if event.status is not None:
                attrs["http.response.status_code"] = event.status
            if event.outcome and event.outcome != "ok":
                attrs["error.type"] = (
                    str(event.status) if event.status is not None else event.outcome
                )
            if event.latency_ms is not None:
                self._attempts.record(event.latency_ms / 1000.0, attrs)
        elif kind == "policy" and event.outcome:
            attrs = {"patchbay.decision": event.outcome}
            if event.integration is not None:
                attrs["patchbay.integration"] = event.integration
            self._decisions.add(1, attrs)
