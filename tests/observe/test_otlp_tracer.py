"""patchbay's lean tracer on its own: what it encodes, decoded with opentelemetry-proto.

Endpoint templates are cached per origin (two hosts serving the same path are two kinds of
span), ids and `traceparent` agree, and the parent is whatever is current.
"""

from __future__ import annotations

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from patchbay.http._types import Request
from patchbay.observe._otlp import OtlpTracer
from patchbay.observe._otlp_export import SpanShipper, encode_request

from .otel_support import attrs


class _Kept(SpanShipper):
    """Keeps encoded spans in memory instead of posting them."""

    def __init__(self) -> None:  # no thread, no connection
        self.kept: list[bytes] = []

    def add(self, span: bytes) -> None:
        self.kept.append(span)

    def spans(self) -> list[Span]:
        found = ExportTraceServiceRequest.FromString(encode_request(self.kept, {}))
        return [s for rs in found.resource_spans for ss in rs.scope_spans for s in ss.spans]


def _request(url: str, path: str = "/invoices/{id}", method: str = "GET") -> Request:
    return Request(method, url, path, "billing", "lookup", {}, ())


def _traced_attempt(tracer: OtlpTracer, request: Request, status: int = 200) -> str:
    attempt = tracer.start_attempt(request, 0)
    tracer.end_attempt(attempt, status, "ok" if status < 400 else f"http_{status}")
    return attempt.headers["traceparent"]


def test_the_same_path_on_two_hosts_names_each_host() -> None:
    shipper = _Kept()
    tracer = OtlpTracer(shipper)
    tool = tracer.start_tool("lookup", description=None, call_id="c-1", tool_call_id="t-1",
                             integration="billing")  # fmt: skip
    for url in (
        "https://eu.billing.test/invoices/1",
        "https://us.billing.test:8443/invoices/2",
        "https://eu.billing.test/invoices/3",
        "http://user:pw@[::1]:9000?region=eu",  # no path, userinfo and an IPv6 literal
    ):
        _traced_attempt(tracer, _request(url))
    tracer.end_tool(tool, error_type=None, attempts=4)
    *attempts, root = shipper.spans()
    where = [(attrs(s)["server.address"], attrs(s).get("server.port")) for s in attempts]
    assert where == [
        ("eu.billing.test", 443),
        ("us.billing.test", 8443),
        ("eu.billing.test", 443),
        ("::1", 9000),
    ]
    assert all(s.parent_span_id == root.span_id and s.trace_id == root.trace_id for s in attempts)
    assert attrs(root)["gen_ai.tool.call.id"] == "t-1"
    assert attrs(root)["gen_ai.conversation.id"] == "c-1"
    assert attrs(root)["patchbay.attempts"] == 4
    assert b"pw" not in b"".join(shipper.kept)  # userinfo never becomes an attribute


def test_traceparent_names_the_attempt_span_that_was_exported() -> None:
    shipper = _Kept()
    tracer = OtlpTracer(shipper)
    tool = tracer.start_tool("lookup", description="d", call_id=None, tool_call_id=None,
                             integration=None)  # fmt: skip
    sent = _traced_attempt(tracer, _request("http://127.0.0.1:8080/invoices/1"), 503)
    tracer.end_tool(tool, error_type="upstream_unavailable")
    attempt, root = shipper.spans()
    version, trace_id, span_id, flags = sent.split("-")
    assert (version, flags) == ("00", "01")
    assert (bytes.fromhex(trace_id), bytes.fromhex(span_id)) == (attempt.trace_id, attempt.span_id)
    assert attrs(attempt)["error.type"] == "503" and attempt.status.code == 2
    assert attrs(root)["error.type"] == "upstream_unavailable" and root.status.code == 2
    assert root.parent_span_id == b""  # nothing was current: a new trace


def test_spans_join_the_current_opentelemetry_span() -> None:
    shipper = _Kept()
    tracer = OtlpTracer(shipper)
    outer = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1))
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(outer)))
    try:
        tool = tracer.start_tool("lookup", description=None, call_id=None, tool_call_id=None,
                                 integration=None)  # fmt: skip
        tracer.end_tool(tool, error_type=None)
        # An attempt outside any tool call is a child of the current span too.
        sent = _traced_attempt(tracer, _request("http://127.0.0.1:8080/x", "/x", "POST"))
    finally:
        otel_context.detach(token)
    root, lone = shipper.spans()
    assert root.trace_id == lone.trace_id == (0x1234).to_bytes(16, "big")
    assert root.parent_span_id == lone.parent_span_id == (0x5678).to_bytes(8, "big")
    assert sent.split("-")[1] == f"{0x1234:032x}"


@pytest.mark.parametrize(
    "call_id",
    ["c", "%s%c-ünï-✓", "x" * 99, "y" * 100, "z" * 102, "z" * 103, "w" * 5000, "\ud800-lone"],
)
def test_ids_of_any_length_arrive_as_sent(call_id: str) -> None:
    shipper = _Kept()
    tracer = OtlpTracer(shipper)
    tool = tracer.start_tool("lookup", description=None, call_id=call_id, tool_call_id=call_id,
                             integration=None)  # fmt: skip
    tracer.end_tool(tool, error_type=None)
    (root,) = shipper.spans()
    sent = call_id.encode("utf-8", "replace").decode()  # a lone surrogate cannot be sent
    assert attrs(root)["gen_ai.conversation.id"] == sent
    assert attrs(root)["gen_ai.tool.call.id"] == sent
