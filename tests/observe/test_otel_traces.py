"""OpenTelemetry traces, checked by decoding what a real OTLP/HTTP receiver gets.

Tool calls run against the example billing API (behind the fault proxy and a hop that records
what reaches the upstream); spans leave through the SDK's batch processor and OTLP exporter.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from patchbay import CallContext, ToolRuntime
from patchbay.observe import MemorySink, OtlpObserver, Tracing, otlp_observer
from patchbay.runtime import ToolCall
from patchbay.spec import Config, load_config, load_config_text
from patchbay.testing import BillingServer, Fault, FaultProxy

from .otel_support import OtlpReceiver, RecordingHop, attrs

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "billing"
PHONE = "555-123-4567"
PHONE_E164 = "+15551234567"
CUSTOMER = "cus_8F2kLq"
CALLER_EMAIL = "jamie.patel@example.com"
SPAN_KIND_INTERNAL, SPAN_KIND_CLIENT = 1, 3
STATUS_ERROR = 2


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    async with OtlpReceiver() as r:
        yield r


@pytest.fixture
async def hop(proxy: FaultProxy) -> AsyncIterator[RecordingHop]:
    async with RecordingHop(proxy.url) as h:
        yield h


@pytest.fixture
def config(env: dict[str, str], hop: RecordingHop) -> Config:
    return load_config(EXAMPLE_DIR / "patchbay.yaml", env={**env, "BILLING_URL": hop.url})


@pytest.fixture
async def otel(receiver: OtlpReceiver) -> AsyncIterator[OtlpObserver]:
    observer = otlp_observer(
        receiver.url, service_name="voice-gw", headers={"x-collector-key": "collector-k3y"}
    )
    yield observer
    await asyncio.to_thread(observer.shutdown)


async def _exported(otel: OtlpObserver) -> None:
    await otel.flush()


def _hex(raw: bytes) -> str:
    return raw.hex()


async def test_a_tool_call_is_an_execute_tool_span_over_its_attempts(
    config: Config,
    otel: OtlpObserver,
    receiver: OtlpReceiver,
    hop: RecordingHop,
    proxy: FaultProxy,
) -> None:
    # The first attempt gets a 500, the retry a 200: two client spans and a `retry` event.
    proxy.add(Fault("status", status=500, times=1, path_prefix="/customers/cus_"))
    async with ToolRuntime(config, sinks=[], sleep=_no_sleep, otel=otel) as rt:
        call = CallContext(id="call-otel-1")
        result = await rt.execute(
            ToolCall("get_customer", {"customer_id": CUSTOMER}, call, tool_call_id="tc_91")
        )
        assert result.ok, result.to_dict()
        assert result.meta["attempts"] == 2
    await _exported(otel)

    [tool] = receiver.named("execute_tool")
    assert tool.name == "execute_tool get_customer"
    assert tool.kind == SPAN_KIND_INTERNAL
    a = attrs(tool)
    assert a["gen_ai.operation.name"] == "execute_tool"
    assert a["gen_ai.tool.name"] == "get_customer"
    assert a["gen_ai.tool.type"] == "function"
    assert a["gen_ai.tool.call.id"] == "tc_91"
    assert a["gen_ai.conversation.id"] == "call-otel-1"
    assert a["gen_ai.tool.description"].startswith("Fetch a customer")
    assert a["patchbay.attempts"] == 2
    assert "error.type" not in a
    assert tool.parent_span_id == b""  # nothing was current: a root span
    assert receiver.resources[0]["service.name"] == "voice-gw"

    first, second = sorted(receiver.children(tool), key=lambda s: s.start_time_unix_nano)
    for span in (first, second):
        assert span.kind == SPAN_KIND_CLIENT
        assert span.name == "GET /customers/{customer_id}"
        sa = attrs(span)
        assert sa["http.request.method"] == "GET"
        assert sa["url.template"] == "/customers/{customer_id}"
        assert sa["server.address"] == "127.0.0.1"
        assert sa["server.port"] == hop.port
    assert attrs(first)["http.response.status_code"] == 500
    assert attrs(first)["error.type"] == "500"
    assert first.status.code == STATUS_ERROR
    assert "http.request.resend_count" not in attrs(first)
    assert attrs(second)["http.response.status_code"] == 200
    assert attrs(second)["http.request.resend_count"] == 1
    assert "error.type" not in attrs(second)

    # The retry decision is an event of the tool's span, between the two attempts.
    [retry] = [e for e in tool.events if e.name == "retry"]
    assert attrs(retry)["patchbay.attempt"] == 1
    assert attrs(retry)["patchbay.wait_s"] >= 0
    assert first.end_time_unix_nano <= retry.time_unix_nano <= second.start_time_unix_nano

    # Each attempt carried its own span's W3C traceparent to the upstream.
    sent = [p.rsplit("-", 1) for p in hop.traceparents()]
    assert [head for head, _ in sent] == [
        f"00-{_hex(s.trace_id)}-{_hex(s.span_id)}" for s in (first, second)
    ]
    assert all(int(flags, 16) & 1 for _, flags in sent)  # sampled
    # The collector got the headers it was given (its key), the upstream did not.
    assert all(h.get("x-collector-key") == "collector-k3y" for h in receiver.headers)
    assert not any("x-collector-key" in {k.lower() for k in h} for _, _, h in hop.seen)


async def test_a_handler_tool_and_a_failed_call(
    config: Config, otel: OtlpObserver, receiver: OtlpReceiver
) -> None:
    async with ToolRuntime(config, sinks=[], sleep=_no_sleep, otel=otel) as rt:
        call = CallContext(id="call-otel-2", caller=PHONE_E164)
        looked = await rt.call_tool("lookup_customer_invoices", {"phone": PHONE}, call)
        assert looked.ok, looked.to_dict()
        missing = await rt.call_tool("get_customer", {"customer_id": "cus_nobody0"}, call)
        assert missing.error is not None and missing.error.code == "not_found"
    await _exported(otel)

    lookup, failed = receiver.named("execute_tool")
    # The handler's two requests are children of its tool span, each in the same trace.
    names = sorted(s.name for s in receiver.children(lookup))
    assert names == ["GET /customers/search", "GET /invoices"]
    assert lookup.status.code != STATUS_ERROR
    # Two tool calls of the same phone call: two traces (nothing joined them), one call id.
    assert lookup.trace_id != failed.trace_id
    assert attrs(failed)["gen_ai.conversation.id"] == "call-otel-2"
    assert attrs(failed)["error.type"] == "not_found"
    assert failed.status.code == STATUS_ERROR
    assert failed.status.message == ""  # the error's words are for the LLM, not for traces
    [attempt] = receiver.children(failed)
    assert attrs(attempt)["http.response.status_code"] == 404
    assert attrs(attempt)["error.type"] == "404"


async def test_no_secret_argument_caller_or_idempotency_key_is_exported(
    config: Config, otel: OtlpObserver, receiver: OtlpReceiver, billing: BillingServer
) -> None:
    async with ToolRuntime(config, sinks=[], sleep=_no_sleep, otel=otel) as rt:
        call = CallContext(id="call-otel-3", caller=PHONE_E164)
        await rt.start_call(call)  # the prefetch looks the caller up by their number
        looked = await rt.call_tool("lookup_customer_invoices", {"email": CALLER_EMAIL}, call)
        assert looked.ok, looked.to_dict()
        invoice = looked.result["invoices"][0]
        paid = await rt.call_tool(
            "create_payment",
            {
                "invoice_id": invoice["invoice_id"],
                "amount": invoice["amount"],
                "payment_method_id": "pm_card_visa4242",
            },
            call,
        )
        assert paid.ok, paid.to_dict()
        key = paid.meta["idempotency_key"]
        await rt.end_call(call)
    await _exported(otel)

    assert {s.name for s in receiver.named("execute_tool")} >= {
        "execute_tool lookup_customer_invoices",
        "execute_tool create_payment",
    }
    assert any(s.name == "POST /payments" for s in receiver.spans)
    exported = receiver.everything()
    assert exported  # the checks below would pass on nothing
    forbidden = [
        billing.api_key,  # the integration's secret
        "collector-k3y",  # the collector's own key goes in headers, not in spans
        PHONE_E164,
        PHONE,
        "5551234567",
        CALLER_EMAIL,
        CUSTOMER,  # an id the lookup found, sent in the next request's query
        invoice["invoice_id"],
        "pm_card_visa4242",
        str(invoice["amount"]),
        key,
        "Jamie",  # the answer's contents
    ]
    for value in forbidden:
        assert value.encode() not in exported, value


async def test_cache_and_breaker_decisions_are_span_events(
    env: dict[str, str], hop: RecordingHop, proxy: FaultProxy, receiver: OtlpReceiver
) -> None:
    text = (EXAMPLE_DIR / "patchbay.yaml").read_text()
    text = text.replace(
        "    timeout_s: 2\n",
        "    timeout_s: 2\n    breaker: {failure_rate: 0.5, window: 2, min_calls: 2, open_s: 60}\n",
    ).replace("    budget_s: 3\n", "    budget_s: 3\n    cache: {ttl_s: 60}\n", 1)
    cfg = load_config_text(text, base_dir=EXAMPLE_DIR, env={**env, "BILLING_URL": hop.url})
    otel = otlp_observer(receiver.url)
    try:
        async with ToolRuntime(cfg, sinks=[], sleep=_no_sleep, otel=otel) as rt:
            call = CallContext(id="call-otel-4")
            for _ in range(2):
                got = await rt.call_tool("get_customer", {"customer_id": CUSTOMER}, call)
                assert got.ok
            proxy.add(Fault("status", status=503, path_prefix="/invoices"))
            for _ in range(2):
                await rt.call_tool("lookup_customer_invoices", {"phone": PHONE}, call)
        await otel.flush()
    finally:
        await asyncio.to_thread(otel.shutdown)

    spans = receiver.named("execute_tool get_customer")
    assert len(spans) == 2
    cached = spans[1]
    assert [e.name for e in cached.events] == ["cache_hit"]
    assert attrs(cached)["patchbay.cached"] is True
    assert receiver.children(cached) == []  # answered from the cache: no request was sent
    events = [e for s in receiver.named("execute_tool lookup") for e in s.events]
    opened = [e for e in events if e.name == "circuit_open"]
    assert opened, [e.name for e in events]
    assert attrs(opened[0])["patchbay.policy"] == "breaker"


async def test_without_otel_nothing_is_traced_or_sent(config: Config, hop: RecordingHop) -> None:
    sink = MemorySink()
    async with ToolRuntime(config, sinks=[sink], sleep=_no_sleep) as rt:
        assert rt.tracing is None
        got = await rt.call_tool("get_customer", {"customer_id": CUSTOMER}, CallContext(id="c"))
        assert got.ok
    assert hop.seen and list(hop.traceparents()) == []


async def test_otel_metrics_beside_the_traces(
    config: Config, receiver: OtlpReceiver, proxy: FaultProxy
) -> None:
    otel = otlp_observer(receiver.url + "/v1/traces", metrics=True)
    proxy.add(Fault("status", status=500, times=1, path_prefix="/customers/cus_"))
    try:
        async with ToolRuntime(config, sinks=[], sleep=_no_sleep, otel=otel) as rt:
            got = await rt.call_tool("get_customer", {"customer_id": CUSTOMER}, "c-m")
            assert got.ok
        await otel.flush()
    finally:
        await asyncio.to_thread(otel.shutdown)
    assert receiver.named("execute_tool get_customer")  # the suffix was taken off
    assert {
        "patchbay.tool.duration",
        "http.client.request.duration",
        "patchbay.policy.decisions",
    } <= receiver.metric_names()
    assert CUSTOMER.encode() not in receiver.everything()


def test_otlp_observer_refuses_a_bad_endpoint() -> None:
    with pytest.raises(ValueError, match="http\\(s\\) URL"):
        otlp_observer("localhost:4318")
    with pytest.raises(ValueError, match="scheme 'ftp'"):
        otlp_observer("ftp://collector:4318")
    with pytest.raises(ValueError, match="query"):
        otlp_observer("http://collector:4318/?token=x")
    with pytest.raises(ValueError, match="service_name"):
        otlp_observer("http://collector:4318", service_name="")
    # A URL with credentials is not repeated in the error.
    with pytest.raises(ValueError) as info:
        otlp_observer("gopher://user:s3cret@collector")
    assert "s3cret" not in str(info.value)


def test_nothing_but_the_entry_point_needs_opentelemetry() -> None:
    code = (
        "import sys\n"
        "import patchbay, patchbay.runtime, patchbay.gateway, patchbay.observe._otel\n"
        "assert not any(m.startswith('opentelemetry') for m in sys.modules), "
        "[m for m in sys.modules if m.startswith('opentelemetry')]\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr


async def test_tracing_on_an_sdk_tracer_provider_of_your_own(
    config: Config, hop: RecordingHop, proxy: FaultProxy
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    proxy.add(Fault("status", status=500, times=1, path_prefix="/customers/cus_"))
    otel = OtlpObserver(tracing=Tracing(provider))
    try:
        async with ToolRuntime(config, sinks=[], sleep=_no_sleep, otel=otel) as rt:
            got = await rt.call_tool("get_customer", {"customer_id": CUSTOMER}, "c-sdk")
            assert got.ok and got.meta["attempts"] == 2
    finally:
        provider.shutdown()
    spans = exporter.get_finished_spans()
    [tool] = [s for s in spans if s.name == "execute_tool get_customer"]
    assert tool.attributes is not None and tool.attributes["gen_ai.tool.name"] == "get_customer"
    attempts = [
        s for s in spans if s.parent is not None and s.parent.span_id == tool.context.span_id
    ]
    assert [a.attributes["http.response.status_code"] for a in attempts if a.attributes] == [
        500,
        200,
    ]
    assert [e.name for e in tool.events] == ["retry"]
    sent = [p.split("-")[2] for p in hop.traceparents()]
    assert sent == [f"{a.context.span_id:016x}" for a in attempts]


async def test_a_collector_that_is_down_never_fails_a_call(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    async with OtlpReceiver() as gone:
        url = gone.url  # a free port, closed again: nothing listens there now
    otel = otlp_observer(url, headers={"x-collector-key": "collector-k3y"})
    try:
        async with ToolRuntime(config, sinks=[], sleep=_no_sleep, otel=otel) as rt:
            got = await rt.call_tool("get_customer", {"customer_id": CUSTOMER}, "c-down")
            assert got.ok, got.to_dict()
    finally:
        await asyncio.to_thread(otel.shutdown)
    warned = [r.getMessage() for r in caplog.records if r.name == "patchbay.observe"]
    assert any("2 spans not exported" in m for m in warned), warned
    assert not any("collector-k3y" in m or url in m for m in warned)
