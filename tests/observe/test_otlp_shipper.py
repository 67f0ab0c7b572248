"""The OTLP span shipper and encoder on their own, against a real OTLP/HTTP receiver.

Spans are encoded when they end and leave in batches: a full batch leaves at once, a partial
one after `delay_s`, everything on `flush`; what a receiver decodes (with opentelemetry-proto)
is exactly what was encoded, long and non-ASCII values included.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable

import pytest

from patchbay.observe._otlp_export import (
    SpanShipper,
    SpanTemplate,
    encode_attribute,
    encode_event,
    encode_request,
    encode_span,
    span_ids,
)

from .otel_support import OtlpReceiver, attrs

TEMPLATE = SpanTemplate("GET /invoices", 3, (("http.request.method", "GET"), ("server.port", 8080)))


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    async with OtlpReceiver() as r:
        yield r


def _span(n: int) -> bytes:
    trace_id, span_id = os.urandom(16), n.to_bytes(8, "big")
    return encode_span(span_ids(trace_id, b""), span_id, TEMPLATE, 1_000 + n, 2_000 + n, b"", False)


async def _until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the receiver did not get the spans in time"
        await asyncio.sleep(0.02)


async def test_full_batches_leave_at_once_and_the_rest_on_flush(receiver: OtlpReceiver) -> None:
    shipper = SpanShipper(f"{receiver.url}/v1/traces", {}, {"service.name": "t"}, "1", batch=8,
                          delay_s=60.0)  # fmt: skip
    try:
        for n in range(1, 21):
            shipper.add(_span(n))
        await _until(lambda: len(receiver.spans) >= 16)
        await asyncio.sleep(0.3)
        # Two full batches left without waiting a minute; the last 4 wait for more.
        assert len(receiver.spans) == 16
        assert len(receiver.raw) == 2
        await asyncio.to_thread(shipper.flush)
        assert len(receiver.raw) == 3
        ids = [int.from_bytes(s.span_id, "big") for s in receiver.spans]
        assert ids == list(range(1, 21))  # each once, oldest first
        assert shipper.dropped == 0 and shipper.failed == 0
    finally:
        await asyncio.to_thread(shipper.shutdown)


async def test_a_partial_batch_leaves_after_the_delay(receiver: OtlpReceiver) -> None:
    shipper = SpanShipper(f"{receiver.url}/v1/traces", {}, {"service.name": "t"}, "1",
                          delay_s=0.2)  # fmt: skip
    try:
        for n in range(1, 4):
            shipper.add(_span(n))
        await _until(lambda: len(receiver.spans) == 3)
    finally:
        await asyncio.to_thread(shipper.shutdown)


async def test_past_the_queue_bound_spans_are_dropped_and_counted(receiver: OtlpReceiver) -> None:
    shipper = SpanShipper(f"{receiver.url}/v1/traces", {}, {"service.name": "t"}, "1",
                          max_queue=5, delay_s=60.0)  # fmt: skip
    try:
        for n in range(1, 9):
            shipper.add(_span(n))
        assert shipper.dropped == 3
        await asyncio.to_thread(shipper.flush)
        assert [int.from_bytes(s.span_id, "big") for s in receiver.spans] == [1, 2, 3, 4, 5]
    finally:
        await asyncio.to_thread(shipper.shutdown)


async def test_what_is_encoded_is_what_a_receiver_decodes(receiver: OtlpReceiver) -> None:
    long_text = "ünïcødé " * 700  # over 4 KB: lengths past the looked-up ones
    template = SpanTemplate(
        "execute_tool lookup", 1, (("gen_ai.tool.description", long_text), ("ratio", 0.5))
    )
    trace_id, span_id, parent = os.urandom(16), os.urandom(8), os.urandom(8)
    extra = (
        encode_attribute("gen_ai.conversation.id", "call-✓-1")
        + encode_attribute("patchbay.attempts", -3)
        + encode_attribute("patchbay.cached", False)
        + encode_event(1_500, "retry", (("patchbay.delay_s", 0.25), ("patchbay.attempt", 2)))
    )
    span = encode_span(span_ids(trace_id, parent), span_id, template, 1_000, 2_000, extra, True)
    shipper = SpanShipper(f"{receiver.url}/v1/traces", {"x-key": "k"}, {"service.name": "t"}, "9")
    try:
        shipper.add(span)
        await asyncio.to_thread(shipper.flush)
    finally:
        await asyncio.to_thread(shipper.shutdown)
    (got,) = receiver.spans
    assert (got.trace_id, got.span_id, got.parent_span_id) == (trace_id, span_id, parent)
    assert (got.name, got.kind, got.start_time_unix_nano, got.end_time_unix_nano) == (
        "execute_tool lookup", 1, 1_000, 2_000,
    )  # fmt: skip
    assert attrs(got) == {
        "gen_ai.tool.description": long_text,
        "ratio": 0.5,
        "gen_ai.conversation.id": "call-✓-1",
        "patchbay.attempts": -3,
        "patchbay.cached": False,
    }
    (event,) = got.events
    assert (event.name, event.time_unix_nano) == ("retry", 1_500)
    assert attrs(event) == {"patchbay.delay_s": 0.25, "patchbay.attempt": 2}
    assert got.status.code == 2  # ERROR
    assert receiver.resources == [{"service.name": "t"}]
    assert receiver.headers[0]["x-key"] == "k"
    # The same bytes as the encoder's own request for one span.
    assert receiver.raw[0] == encode_request([span], {"service.name": "t"}, "9")
