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
- `background`: writes that finished after their caller gave up;
- `anomaly`: call rates a tool's guard found anomalous, by tool, tenant and `extra["kind"]`;
- `contract`: answers that broke a tool's response contract, by tool, integration and version;
- `deprecation`: endpoints the API said are deprecated or sunset (once a day per endpoint);
- `extra["version"]` on `tool_call` and `attempt` events: calls and upstream latency by the
  API version sent (the configured pinned and canary values only).

prometheus_client only formats the exposition here: the counts are kept by `Counter`,
`Histogram` and `Gauge` below, which are collectors on the sink's registry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterator, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from patchbay.observe._events import Event

__all__ = [
    "BREAKER_STATES",
    "MAX_SERIES",
    "METRICS_CONTENT_TYPE",
    "OTHER",
    "UNKNOWN_TOOL",
    "Counter",
    "Gauge",
    "Histogram",
    "PrometheusSink",
]

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}

# Voice budgets are seconds, not minutes: buckets from 5 ms to 10 s.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

Labels = tuple[str, ...]

UNKNOWN_TOOL = "unknown"  # the one label of every tool name the config does not have
OTHER = "other"  # the label of an unknown tenant, and of every label past a family's bound
# The kinds of anomaly a tool guard reports; anything else is counted as OTHER.
_ANOMALY_KINDS = frozenset({"per_call", "per_minute", "baseline"})
# Label sets one family keeps; later new ones are counted together under OTHER, so callers
# who make up names cannot grow the exposition without limit.
MAX_SERIES = 2000

# Hand-kept rather than prometheus_client's metric objects, which take a lock on every
# update: updates here come from one event loop thread, and a scrape copies each series
# as it reads it, which is a consistent-enough snapshot.


class _Family(ABC):
    """A metric family of one name, registered on a registry as its own collector."""

    max_series = MAX_SERIES

    def __init__(
        self, registry: CollectorRegistry, name: str, documentation: str, labels: Sequence[str]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labels)
        self._overflow: Labels = (OTHER,) * len(self.labelnames)
        registry.register(self)

    def _check(self, labels: Labels, seen: int) -> Labels:
        """The label set to count under: `labels`, or the overflow set once `seen` is the bound."""
        # Only a label set seen for the first time comes here, so the hot path skips it.
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {len(labels)}")
        return labels if seen < self.max_series else self._overflow

    def describe(self) -> Iterator[Metric]:
        """The family without samples, for the registry's check that names do not clash."""
        yield self._family()

    @abstractmethod
    def collect(self) -> Iterator[Metric]:
        """The family with a sample per label set seen so far."""

    @abstractmethod
    def _family(self) -> Metric:
        """The family without samples."""


class Counter(_Family):
    """A counter per label set, exposed as `<name>_total`."""

    def __init__(
        self, registry: CollectorRegistry, name: str, documentation: str, labels: Sequence[str]
    ) -> None:
        self._values: dict[Labels, float] = {}
        super().__init__(registry, name, documentation, labels)

    def inc(self, *labels: str) -> None:
        """Add one to the count of these label values (given in label-name order)."""
        try:
            self._values[labels] += 1.0
        except KeyError:
            kept = self._check(labels, len(self._values))
            self._values[kept] = self._values.get(kept, 0.0) + 1.0

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The family with a sample per label set seen so far."""
        family = self._family()
        for labels, count in list(self._values.items()):
            family.add_metric(labels, count)
        yield family


class Gauge(_Family):
    """A value per label set, set rather than added to."""

    def __init__(
        self, registry: CollectorRegistry, name: str, documentation: str, labels: Sequence[str]
    ) -> None:
        self._values: dict[Labels, float] = {}
        super().__init__(registry, name, documentation, labels)

    def set(self, value: float, *labels: str) -> None:
        """Set the value of these label values (given in label-name order)."""
        if labels not in self._values:
            labels = self._check(labels, len(self._values))
        self._values[labels] = float(value)

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The family with a sample per label set seen so far."""
        family = self._family()
        for labels, value in list(self._values.items()):
            family.add_metric(labels, value)
        yield family


class Histogram(_Family):
    """Observations per label set in fixed buckets, exposed as `_bucket`, `_count`, `_sum`."""

    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        documentation: str,
        labels: Sequence[str],
        buckets: Sequence[float],
    ) -> None:
        self.bounds = tuple(sorted(float(b) for b in buckets if b != float("inf")))
        # The `le` text prometheus_client's own Histogram writes (its helper is unannotated).
        les = [floatToGoString(b) for b in self.bounds]  # type: ignore[no-untyped-call]
        self._le: list[str] = [*les, "+Inf"]
        # Per label set: a count per bucket (not cumulative; the last is +Inf), then the sum.
        self._series: dict[Labels, list[float]] = {}
        super().__init__(registry, name, documentation, labels)

    def observe(self, value: float, *labels: str) -> None:
        """Count a value for these label values; a value equal to a bound is in that bucket."""
        series = self._series.get(labels)
        if series is None:
            labels = self._check(labels, len(self._series))
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = [0.0] * (len(self.bounds) + 2)
        series[bisect_left(self.bounds, value)] += 1.0
        series[-1] += value

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """The family with a sample per label set seen so far."""
        family = self._family()
        for labels, kept in list(self._series.items()):
            series = list(kept)
            total = 0.0
            buckets: list[tuple[str, float]] = []
            for le, count in zip(self._le, series[:-1], strict=True):
                total += count
                buckets.append((le, total))
            family.add_metric(labels, buckets, series[-1])
        yield family


class PrometheusSink:
    """An EventSink that keeps Prometheus counters, histograms and gauges of tool calls.

    Given the config's `tools` (and `tenants`), any other name is counted under one label,
    `unknown` (`other`), whichever surface it came in by; without them names are kept as they
    come, and every family stops taking new label sets at `MAX_SERIES`.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        prefix: str = "patchbay",
        *,
        tools: Collection[str] | None = None,
        tenants: Collection[str] | None = None,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._tools = None if tools is None else frozenset(tools)
        self._tenants = None if tenants is None else frozenset(tenants)
        p = prefix
        self.tool_calls = self.counter(
            f"{p}_tool_calls", "Tool calls by tool and outcome.", ["tool", "outcome"]
        )
        self.tool_latency = self.histogram(
            f"{p}_tool_call_seconds",
            "Tool call latency, end to end inside the runtime.",
            ["tool"],
            _LATENCY_BUCKETS,
        )
        self.errors = self.counter(f"{p}_tool_errors", "Failed tool calls by error code.", ["code"])
        self.cache_hits = self.counter(
            f"{p}_cache_hits", "Tool calls answered from the cache.", ["tool"]
        )
        self.upstream_requests = self.counter(
            f"{p}_upstream_requests",
            "Requests sent upstream, by endpoint and outcome.",
            ["integration", "method", "endpoint", "outcome"],
        )
        self.upstream_latency = self.histogram(
            f"{p}_upstream_request_seconds",
            "Latency of one upstream attempt, by endpoint (the path template).",
            ["integration", "method", "endpoint"],
            _LATENCY_BUCKETS,
        )
        self.retries = self.counter(
            f"{p}_retries", "Upstream retries scheduled.", ["integration", "tool"]
        )
        self.breaker_state = self.gauge(
            f"{p}_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["integration", "endpoint"],
        )
        self.rate_limit_wait = self.histogram(
            f"{p}_rate_limit_wait_seconds",
            "Time spent waiting for a rate-limit token.",
            ["integration"],
            _WAIT_BUCKETS,
        )
        self.background = self.counter(
            f"{p}_background_writes",
            "Writes that finished after their caller stopped waiting, by outcome.",
            ["tool", "outcome"],
        )
        self.anomalies = self.counter(
            f"{p}_anomalies",
            "Call rates a tool's guard found anomalous, by kind (per_call, per_minute, baseline).",
            ["tool", "tenant", "kind"],
        )
        self.contracts = self.counter(
            f"{p}_contract_mismatches",
            "Upstream answers that broke the tool's response contract (response.expect, root).",
            ["tool", "integration", "version"],
        )
        self.deprecations = self.counter(
            f"{p}_deprecations",
            "Deprecation or Sunset headers seen, once a day per endpoint (the path template).",
            ["integration", "endpoint"],
        )
        self.version_calls = self.counter(
            f"{p}_version_tool_calls",
            "Tool calls by the API version they sent (pinned or canary) and outcome.",
            ["tool", "version", "outcome"],
        )
        self.version_latency = self.histogram(
            f"{p}_version_request_seconds",
            "Latency of one upstream attempt by the API version sent (pinned or canary).",
            ["integration", "version"],
            _LATENCY_BUCKETS,
        )
        self._handlers: dict[str, Callable[[Event], None]] = {
            "tool_call": self._tool_call,
            "attempt": self._attempt,
            "policy": self._policy,
            "background": self._background,
            "anomaly": self._anomaly,
            "contract": self._contract,
            "deprecation": self._deprecation,
        }

    def counter(self, name: str, documentation: str, labels: Sequence[str]) -> Counter:
        """A new counter on this sink's registry (`name` without `_total`)."""
        return Counter(self.registry, name, documentation, labels)

    def gauge(self, name: str, documentation: str, labels: Sequence[str]) -> Gauge:
        """A new gauge on this sink's registry."""
        return Gauge(self.registry, name, documentation, labels)

    def histogram(
        self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> Histogram:
        """A new histogram on this sink's registry, with these bucket bounds (+Inf is added)."""
        return Histogram(self.registry, name, documentation, labels, buckets)

    def tool(self, name: str) -> str:
        """The label of a tool name: itself when known (or no tools were given), else unknown."""
        known = self._tools
        return name if known is None or name in known else UNKNOWN_TOOL

    def tenant(self, name: str | None) -> str:
        """The label of a tenant: itself when known (or no tenants were given), else other."""
        if not name:
            return ""
        known = self._tenants
        return name if known is None or name in known else OTHER

    def emit(self, event: Event) -> None:
        """Update the metrics an event speaks to."""
        handler = self._handlers.get(event.kind)
        if handler is not None:
            handler(event)

    def _tool_call(self, e: Event) -> None:
        outcome = e.outcome or "unknown"
        tool = self.tool(e.tool)
        self.tool_calls.inc(tool, outcome)
        if e.latency_ms is not None:
            self.tool_latency.observe(e.latency_ms / 1000, tool)
        if outcome != "ok":
            self.errors.inc(outcome)
        if e.extra.get("cached"):
            self.cache_hits.inc(tool)
        version = e.extra.get("version")
        if isinstance(version, str):
            self.version_calls.inc(tool, version, outcome)

    def _attempt(self, e: Event) -> None:
        integration, method, path = e.integration or "", e.method or "", e.path or ""
        self.upstream_requests.inc(integration, method, path, e.outcome or "unknown")
        if e.latency_ms is not None:
            self.upstream_latency.observe(e.latency_ms / 1000, integration, method, path)
            version = e.extra.get("version")
            if isinstance(version, str):
                self.version_latency.observe(e.latency_ms / 1000, integration, version)

    def _policy(self, e: Event) -> None:
        outcome = e.outcome or ""
        policy = e.extra.get("policy")
        if outcome == "retry":
            self.retries.inc(e.integration or "", self.tool(e.tool))
        elif policy == "breaker" or outcome.startswith("breaker_"):
            state = str(e.extra.get("state") or outcome.removeprefix("breaker_"))
            if state in BREAKER_STATES:
                # The breaker names its endpoint ("GET /path", or "*" for the integration).
                endpoint = str(e.extra.get("endpoint") or e.path or "*")
                self.breaker_state.set(BREAKER_STATES[state], e.integration or "", endpoint)
        elif policy == "rate_limit":
            wait = e.extra.get("wait_s")
            if isinstance(wait, int | float) and wait >= 0:
                self.rate_limit_wait.observe(wait, e.integration or "")

    def _background(self, e: Event) -> None:
        self.background.inc(self.tool(e.tool), e.outcome or "unknown")

    def _anomaly(self, e: Event) -> None:
        kind = e.extra.get("kind")
        label = kind if isinstance(kind, str) and kind in _ANOMALY_KINDS else OTHER
        self.anomalies.inc(self.tool(e.tool), self.tenant(e.tenant), label)

    def _contract(self, e: Event) -> None:
        version = e.extra.get("version")
        label = version if isinstance(version, str) else ""
        self.contracts.inc(self.tool(e.tool), e.integration or "", label)

    def _deprecation(self, e: Event) -> None:
        endpoint = e.extra.get("endpoint")
        label = endpoint if isinstance(endpoint, str) else f"{e.method or ''} {e.path or ''}"
        self.deprecations.inc(e.integration or "", label)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
