"""Prometheus metrics from runtime events, in a registry per runtime, served at /metrics."""

from __future__ import annotations

import prometheus_client

from patchbay.observe import Event
from patchbay.observe._metrics import PrometheusSink
from patchbay.spec import load_config_text
from patchbay.testing import BillingServer

from .gateway_support import StackFactory, bearer, example_config, full_auth, with_auth
from .metrics_support import samples, value


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
        Event("policy", "get_customer", integration="billing", outcome="breaker_opened",
              extra={"policy": "breaker", "state": "open", "endpoint": "*"})
    )  # fmt: skip
    sink.emit(
        Event("policy", "get_customer", integration="billing", outcome="rate_wait",
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
            endpoint="*",
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


DOWN = """
version: 1
integrations:
  down:
    base_url: "http://127.0.0.1:9"
    timeout_s: 1
    retry: {attempts: 2, backoff_s: 0, max_backoff_s: 0}
    breaker: {failure_rate: 0.5, window: 4, min_calls: 2, open_s: 30}
    rate_limit: {per_second: 50, burst: 1}  # every retry waits ~20 ms
tools:
  ping:
    integration: down
    description: Ping a service that is down.
    request: {method: GET, path: /ping}
"""


async def test_retries_breaker_and_errors_of_a_dead_upstream(stack: StackFactory) -> None:
    config = with_auth(load_config_text(DOWN), full_auth())
    async with stack(config) as s:
        codes = []
        for i in range(4):
            _, data = await s.post("/tools/ping", {"call": {"id": f"d-{i}"}}, **bearer())
            codes.append(data["error"]["code"])
        status, raw = await s.get("/metrics", **bearer())
    assert status == 200
    assert codes[0] == "upstream_unavailable" and codes[-1] == "circuit_open"
    found = samples(raw)
    assert value(found, "patchbay_retries_total", integration="down", tool="ping") >= 1
    assert value(found, "patchbay_breaker_state", integration="down", endpoint="*") == 2
    assert value(found, "patchbay_tool_errors_total", code="circuit_open") >= 1
    network = {"integration": "down", "method": "GET", "endpoint": "/ping"}
    assert value(found, "patchbay_upstream_requests_total", **network, outcome="network_error") >= 2
    assert value(found, "patchbay_rate_limit_wait_seconds_count", integration="down") >= 1
