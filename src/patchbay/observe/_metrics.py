"""Prometheus metrics built from runtime events, in a registry of their own (never the global one).

One `PrometheusSink` per runtime: attach it with `ToolRuntime(sinks=[...])` or
`runtime.emitter.add(sink)`, and serve `sink.exposition()` at `/metrics`.

Events it reads (see `Event`):

- `tool_call`: calls by tool and outcome, latency per tool, errors by code, cache hits
  (`extra["cached"]`);
- `attempt`: upstream latency and outcome per integration, method and path template;
- `policy` with `outcome == "retry"`: retries;
- `policy` from the breaker (`extra["policy"] == "breaker"` or an outcome `breaker_<state>`),
  with the state in `extra["state"]` or the outcome: breaker state per integration and
  endpoint (`extra["endpoint"]`, else the path template, else `*`);
- `policy` from the rate limiter (`extra["policy"] == "rate_limit"`) with `extra["wait_s"]`:
  rate-limit waits;
- `background`: writes that finished after their caller gave up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from patchbay.observe._events import Event

__all__ = ["BREAKER_STATES", "METRICS_CONTENT_TYPE", "PrometheusSink"]

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}

# Voice budgets are seconds, not minutes: buckets from 5 ms to 10 s.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class PrometheusSink:
    """An EventSink that keeps Prometheus counters, histograms and gauges of tool calls."""

    def __init__(self, registry: CollectorRegistry | None = None, prefix: str = "patchbay") -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r, p = self.registry, prefix
        self.tool_calls = Counter(
            f"{p}_tool_calls", "Tool calls by tool and outcome.", ["tool", "outcome"], registry=r
        )
        self.tool_latency = Histogram(
            f"{p}_tool_call_seconds",
            "Tool call latency, end to end inside the runtime.",
            ["tool"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            f"{p}_tool_errors", "Failed tool calls by error code.", ["code"], registry=r
        )
        self.cache_hits = Counter(
            f"{p}_cache_hits", "Tool calls answered from the cache.", ["tool"], registry=r
        )
        self.upstream_requests = Counter(
            f"{p}_upstream_requests",
            "Requests sent upstream, by endpoint and outcome.",
            ["integration", "method", "endpoint", "outcome"],
            registry=r,
        )
        self.upstream_latency = Histogram(
            f"{p}_upstream_request_seconds",
            "Latency of one upstream attempt, by endpoint (the path template).",
            ["integration", "method", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            f"{p}_retries", "Upstream retries scheduled.", ["integration", "tool"], registry=r
        )
        self.breaker_state = Gauge(
            f"{p}_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["integration", "endpoint"],
            registry=r,
        )
        self.rate_limit_wait = Histogram(
            f"{p}_rate_limit_wait_seconds",
            "Time spent waiting for a rate-limit token.",
            ["integration"],
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.background = Counter(
            f"{p}_background_writes",
            "Writes that finished after their caller stopped waiting, by outcome.",
            ["tool", "outcome"],
            registry=r,
        )
        # labels() takes a lock and builds a key each time; the hot path keeps its own children.
        self._children: dict[tuple[Any, ...], Any] = {}
        self._handlers: dict[str, Callable[[Event], None]] = {
            "tool_call": self._tool_call,
            "attempt": self._attempt,
            "policy": self._policy,
            "background": self._background,
        }

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def emit(self, event: Event) -> None:
        """Update the metrics an event speaks to."""
        handler = self._handlers.get(event.kind)
        if handler is not None:
            handler(event)

    def _tool_call(self, e: Event) -> None:
        outcome = e.outcome or "unknown"
        self._child(self.tool_calls, e.tool, outcome).inc()
        if e.latency_ms is not None:
            self._child(self.tool_latency, e.tool).observe(e.latency_ms / 1000)
        if outcome != "ok":
            self._child(self.errors, outcome).inc()
        if e.extra.get("cached"):
            self._child(self.cache_hits, e.tool).inc()

    def _attempt(self, e: Event) -> None:
        labels = (e.integration or "", e.method or "", e.path or "")
        self._child(self.upstream_requests, *labels, e.outcome or "unknown").inc()
        if e.latency_ms is not None:
            self._child(self.upstream_latency, *labels).observe(e.latency_ms / 1000)

    def _policy(self, e: Event) -> None:
        outcome = e.outcome or ""
        policy = e.extra.get("policy")
        if outcome == "retry":
            self._child(self.retries, e.integration or "", e.tool).inc()
        elif policy == "breaker" or outcome.startswith("breaker_"):
            state = str(e.extra.get("state") or outcome.removeprefix("breaker_"))
            if state in BREAKER_STATES:
                # The breaker names its endpoint ("GET /path", or "*" for the integration).
                endpoint = str(e.extra.get("endpoint") or e.path or "*")
                gauge = self._child(self.breaker_state, e.integration or "", endpoint)
                gauge.set(BREAKER_STATES[state])
        elif policy == "rate_limit":
            wait = e.extra.get("wait_s")
            if isinstance(wait, int | float) and wait >= 0:
                self._child(self.rate_limit_wait, e.integration or "").observe(wait)

    def _background(self, e: Event) -> None:
        self._child(self.background, e.tool, e.outcome or "unknown").inc()

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
