"""The sink's hand-kept counts expose what prometheus_client's own metric objects would."""

from __future__ import annotations

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from patchbay.observe import Event, PrometheusSink

from .metrics_support import samples, value

LE = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf")


def without_created(exposition: bytes) -> list[str]:
    """The exposition's lines, less the `_created` samples the hand-kept counts leave out."""
    return [line for line in exposition.decode().splitlines() if "_created" not in line]


def test_a_value_on_a_bound_lands_in_that_bucket_and_buckets_are_cumulative() -> None:
    sink = PrometheusSink()
    # 5 ms and 10 ms are exactly the first two bounds; 20 s is past the last one.
    for ms in (5.0, 10.0, 1.0, 10.5, 20_000.0):
        sink.emit(Event("tool_call", "t", latency_ms=ms, outcome="ok"))
    found = samples(sink.exposition())
    buckets = [value(found, "patchbay_tool_call_seconds_bucket", tool="t", le=le) for le in LE]
    assert buckets == [2, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5]
    assert value(found, "patchbay_tool_call_seconds_count", tool="t") == 5
    assert value(found, "patchbay_tool_call_seconds_sum", tool="t") == pytest.approx(20.0265)


def test_inf_bucket_equals_count_and_sums_add_up_per_label_set() -> None:
    sink = PrometheusSink()
    waits = {"a": [0.0, 0.001, 0.3, 7.0], "b": [0.05]}
    for integration, values in waits.items():
        for wait in values:
            sink.emit(
                Event("policy", "t", integration=integration, outcome="rate_wait",
                      extra={"policy": "rate_limit", "wait_s": wait})
            )  # fmt: skip
    sink.emit(
        Event("policy", "t", integration="a", outcome="rate_wait",
              extra={"policy": "rate_limit", "wait_s": -1.0})
    )  # fmt: skip
    found = samples(sink.exposition())
    name = "patchbay_rate_limit_wait_seconds"
    for integration, values in waits.items():
        count = value(found, f"{name}_count", integration=integration)
        assert count == len(values)
        assert value(found, f"{name}_bucket", integration=integration, le="+Inf") == count
        assert value(found, f"{name}_sum", integration=integration) == pytest.approx(sum(values))
    assert value(found, f"{name}_bucket", integration="a", le="0.001") == 2
    assert value(found, f"{name}_bucket", integration="a", le="5.0") == 3
    assert value(found, f"{name}_bucket", integration="b", le="0.05") == 1
    assert value(found, f"{name}_bucket", integration="b", le="0.01") == 0


def test_counters_count_each_label_set_apart() -> None:
    sink = PrometheusSink()
    calls = [("a", "ok"), ("a", "ok"), ("a", "timeout"), ("b", "ok"), ("a", "ok")]
    for tool, outcome in calls:
        sink.emit(Event("tool_call", tool, outcome=outcome))
    for outcome in ("ok", "network_error", "network_error"):
        sink.emit(
            Event("attempt", "a", integration="billing", method="GET", path="/x/{id}",
                  outcome=outcome)
        )  # fmt: skip
    found = samples(sink.exposition())
    calls_total = "patchbay_tool_calls_total"
    assert value(found, calls_total, tool="a", outcome="ok") == 3
    assert value(found, calls_total, tool="a", outcome="timeout") == 1
    assert value(found, calls_total, tool="b", outcome="ok") == 1
    assert value(found, calls_total, tool="b", outcome="timeout") == 0
    assert value(found, "patchbay_tool_errors_total", code="timeout") == 1
    endpoint = {"integration": "billing", "method": "GET", "endpoint": "/x/{id}"}
    upstream = "patchbay_upstream_requests_total"
    assert value(found, upstream, **endpoint, outcome="ok") == 1
    assert value(found, upstream, **endpoint, outcome="network_error") == 2
    # No latency on these events, so no histogram series for them.
    assert ("patchbay_tool_call_seconds_count", frozenset({("tool", "a")})) not in found


def test_breaker_gauge_is_overwritten_not_added_to() -> None:
    sink = PrometheusSink()
    for state in ("open", "half_open", "closed"):
        sink.emit(
            Event("policy", "t", integration="billing", outcome=f"breaker_{state}",
                  extra={"policy": "breaker", "state": state, "endpoint": "GET /x"})
        )  # fmt: skip
    sink.emit(Event("policy", "t", integration="billing", outcome="breaker_half_open"))
    found = samples(sink.exposition())
    gauge = "patchbay_breaker_state"
    assert value(found, gauge, integration="billing", endpoint="GET /x") == 0
    assert value(found, gauge, integration="billing", endpoint="*") == 1


def test_two_sinks_keep_apart_counts() -> None:
    a, b = PrometheusSink(), PrometheusSink()
    a.emit(Event("tool_call", "t", latency_ms=3.0, outcome="ok"))
    a.emit(
        Event("policy", "t", integration="billing", outcome="breaker_open",
              extra={"policy": "breaker", "state": "open"})
    )  # fmt: skip
    b.emit(Event("tool_call", "t", latency_ms=3.0, outcome="ok"))
    b.emit(Event("tool_call", "t", latency_ms=3.0, outcome="ok"))
    found_a, found_b = samples(a.exposition()), samples(b.exposition())
    assert value(found_a, "patchbay_tool_call_seconds_count", tool="t") == 1
    assert value(found_b, "patchbay_tool_call_seconds_count", tool="t") == 2
    assert value(found_a, "patchbay_breaker_state", integration="billing", endpoint="*") == 2
    assert (
        "patchbay_breaker_state",
        frozenset({("integration", "billing"), ("endpoint", "*")}),
    ) not in found_b
    assert b"patchbay_tool_call_seconds" not in generate_latest(prometheus_client.REGISTRY)


def test_exposition_parses_with_the_expected_families() -> None:
    sink = PrometheusSink(prefix="pb")
    sink.emit(Event("tool_call", "t", latency_ms=3.0, outcome="ok", extra={"cached": True}))
    sink.emit(
        Event("policy", "t", integration="billing", outcome="breaker_open",
              extra={"policy": "breaker", "state": "open"})
    )  # fmt: skip
    families = {f.name: f for f in text_string_to_metric_families(sink.exposition().decode())}
    assert {name: f.type for name, f in families.items()} == {
        "pb_tool_calls": "counter",
        "pb_tool_call_seconds": "histogram",
        "pb_tool_errors": "counter",
        "pb_cache_hits": "counter",
        "pb_upstream_requests": "counter",
        "pb_upstream_request_seconds": "histogram",
        "pb_retries": "counter",
        "pb_breaker_state": "gauge",
        "pb_rate_limit_wait_seconds": "histogram",
        "pb_background_writes": "counter",
        "pb_anomalies": "counter",
        "pb_contract_mismatches": "counter",
        "pb_deprecations": "counter",
        "pb_version_tool_calls": "counter",
        "pb_version_request_seconds": "histogram",
    }
    assert families["pb_tool_calls"].documentation == "Tool calls by tool and outcome."
    assert [s.name for s in families["pb_cache_hits"].samples] == ["pb_cache_hits_total"]
    bucket_les = [s.labels["le"] for s in families["pb_tool_call_seconds"].samples[:-2]]
    assert bucket_les == list(LE)


def test_extra_families_match_prometheus_client_line_for_line() -> None:
    sink = PrometheusSink()
    counter = sink.counter("x_requests", "Requests.", ["surface", "status"])
    histogram = sink.histogram("x_seconds", "Seconds.", ["surface"], (0.1, 0.5, 1.0, 1e7))
    gauge = sink.gauge("x_state", "State.", ["name"])
    reference = CollectorRegistry()
    ref_counter = prometheus_client.Counter(
        "x_requests", "Requests.", ["surface", "status"], registry=reference
    )
    ref_histogram = prometheus_client.Histogram(
        "x_seconds", "Seconds.", ["surface"], buckets=(0.1, 0.5, 1.0, 1e7), registry=reference
    )
    ref_gauge = prometheus_client.Gauge("x_state", "State.", ["name"], registry=reference)
    for surface, status in (("api", "200"), ("vapi", "401"), ("api", "200"), ("api", "500")):
        counter.inc(surface, status)
        ref_counter.labels(surface, status).inc()
    for surface, seconds in (("api", 0.1), ("api", 0.05), ("vapi", 0.75), ("api", 2e7)):
        histogram.observe(seconds, surface)
        ref_histogram.labels(surface).observe(seconds)
    for name, state in (("a", 2), ("b", 1), ("a", 0)):
        gauge.set(state, name)
        ref_gauge.labels(name).set(state)
    ours = without_created(sink.exposition())
    theirs = without_created(generate_latest(reference))
    assert [line for line in ours if line.startswith(("x_", "# HELP x_", "# TYPE x_"))] == theirs


def test_names_clash_and_label_counts_are_refused() -> None:
    sink = PrometheusSink(registry=CollectorRegistry())
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        sink.counter("patchbay_tool_calls", "Again.", ["tool", "outcome"])
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        sink.histogram("patchbay_tool_call_seconds", "Again.", ["tool"], (1.0,))
    counter = sink.counter("patchbay_other", "Other.", ["a", "b"])
    with pytest.raises(ValueError, match="labels"):
        counter.inc("only-one")
    histogram = sink.histogram("patchbay_other_seconds", "Other.", ["a"], (1.0,))
    with pytest.raises(ValueError, match="labels"):
        histogram.observe(0.5, "a", "b")
    found = samples(sink.exposition())
    assert not [name for name, _ in found if name.startswith("patchbay_other")]
