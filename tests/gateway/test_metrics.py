"""Prometheus metrics from runtime events, in a registry per runtime, served at /metrics."""

from __future__ import annotations

import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

from patchbay.observe import Event
from patchbay.observe._metrics import PrometheusSink
from patchbay.testing import BillingServer

from .gateway_support import StackFactory, bearer, example_config

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(exposition: bytes) -> Samples:
    """Every sample as (name, labels) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(exposition.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent)."""
    return found.get((name, frozenset(labels.items())), 0.0)


def test_events_become_metrics() -> None:
    sink = PrometheusSink()
    sink.emit(Event("tool_call", "get_customer", latency_ms=12.0, outcome="ok"))
    sink.emit(
        Event("tool_call", "get_customer", latency_ms=3.0, outcome="ok", extra={"cached": True})
    )
    sink.emit(Event("tool_call", "create_payment", latency_ms=900.0, outcome="timeout"))
    sink.emit(
        Event("attempt", "get_customer", integration="billing", method="GET",
              path="/customers/{customer_id}", status=200, latency_ms=4.0, outcome="ok")
    )  # fmt: skip
    sink.emit(Event("policy", "get_customer", integration="billing", outcome="retry"))
    sink.emit(
        Event("policy", "get_customer", integration="billing", path="/customers/{customer_id}",
              outcome="breaker_open", extra={"policy": "breaker", "state": "open"})
    )  # fmt: skip
    sink.emit(
        Event("policy", "get_customer", integration="billing", outcome="wait",
              extra={"policy": "rate_limit", "wait_s": 0.2})
    )  # fmt: skip
    sink.emit(Event("background", "create_payment", outcome="ok"))
    found = samples(sink.exposition())
    assert value(found, "patchbay_tool_calls_total", tool="get_customer", outcome="ok") == 2
    assert value(found, "patchbay_tool_calls_total", tool="create_payment", outcome="timeout") == 1
    assert value(found, "patchbay_tool_errors_total", code="timeout") == 1
    assert value(found, "patchbay_cache_hits_total", tool="get_customer") == 1
    assert value(found, "patchbay_tool_call_seconds_count", tool="get_customer") == 2
    assert value(found, "patchbay_tool_call_seconds_bucket", tool="create_payment", le="1.0") == 1
    endpoint = {"integration": "billing", "method": "GET", "endpoint": "/customers/{customer_id}"}
    assert value(found, "patchbay_upstream_requests_total", **endpoint, outcome="ok") == 1
    assert value(found, "patchbay_upstream_request_seconds_count", **endpoint) == 1
    assert value(found, "patchbay_retries_total", integration="billing", tool="get_customer") == 1
    assert (
        value(
            found,
            "patchbay_breaker_state",
            integration="billing",
            endpoint="/customers/{customer_id}",
        )
        == 2
    )
    assert value(found, "patchbay_rate_limit_wait_seconds_sum", integration="billing") == 0.2
    assert (
        value(found, "patchbay_background_writes_total", tool="create_payment", outcome="ok") == 1
    )


def test_each_sink_has_its_own_registry() -> None:
    a, b = PrometheusSink(), PrometheusSink()
    a.emit(Event("tool_call", "x", outcome="ok"))
    assert value(samples(a.exposition()), "patchbay_tool_calls_total", tool="x", outcome="ok") == 1
    assert value(samples(b.exposition()), "patchbay_tool_calls_total", tool="x", outcome="ok") == 0
    assert b"patchbay_tool_calls" not in prometheus_client.generate_latest()


async def test_metrics_after_the_example_call(billing: BillingServer, stack: StackFactory) -> None:
    async with stack(example_config(billing.url)) as s:
        body = {"arguments": {"phone": "555-123-4567"}, "call": {"id": "m-1"}}
        assert (await s.post("/tools/lookup_customer_invoices", body, **bearer()))[0] == 200
        await s.post("/tools/nope", {}, **bearer())
        status, raw = await s.get("/metrics", **bearer())
    assert status == 200
    found = samples(raw)
    tool = "lookup_customer_invoices"
    assert value(found, "patchbay_tool_calls_total", tool=tool, outcome="ok") == 1
    search = {"integration": "billing", "method": "GET", "endpoint": "/customers/search"}
    assert value(found, "patchbay_upstream_request_seconds_count", **search) == 1
    assert value(found, "patchbay_upstream_requests_total", **search, outcome="ok") == 1
    assert value(found, "patchbay_gateway_requests_total", surface="api", status="200") == 1
    assert value(found, "patchbay_gateway_requests_total", surface="api", status="404") == 1
