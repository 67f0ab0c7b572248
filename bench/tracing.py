"""The cost of OpenTelemetry tracing: the example lookup at 64 in flight, traced against not.

Both runtimes run the same config against the same billing API (a separate process). The
traced one exports every span (one `execute_tool` and two client spans per lookup) through
patchbay's OTLP/HTTP exporter to a receiver in another process, which counts them (decoding
outside the timed rounds): a rate bought by dropping spans would show. Traced and untraced
rounds alternate, each side's export is timed in its own round, and the ratio printed is the
median of each round's traced rate over the same round's untraced rate. A third runtime sends
the same spans through the OpenTelemetry SDK (`Tracing(provider)` with its batch span
processor and OTLP/HTTP exporter), for comparison."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable

from core import EXAMPLE, Lookup, concurrent, through_patchbay
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from patchbay import ToolRuntime, load_config
from patchbay.observe import JsonLinesSink, OtlpObserver, Tracing, otlp_observer
from patchbay.testing import BillingServer

Flush = Callable[[], Awaitable[None]]

# A collector stand-in: decodes each export (as a collector would) and counts spans.
_RECEIVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest, ExportTraceServiceResponse)
seen = {"spans": 0, "exports": 0, "bytes": 0}
received = []
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps connections alive, as collectors do
    def log_message(self, *args): pass
    def do_POST(self):
        # Kept, and decoded when asked for the count: a collector runs on other hosts, so
        # its decoding must not take this 2-core machine's CPU from the timed rounds.
        received.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
    def do_GET(self):
        while received:
            body = received.pop()
            export = ExportTraceServiceRequest.FromString(body)
            seen["spans"] += sum(len(ss.spans) for rs in export.resource_spans
                                 for ss in rs.scope_spans)
            seen["exports"] += 1
            seen["bytes"] += len(body)
        answer = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def _seen(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        found: dict[str, int] = json.loads(answer.read())
        return found


async def _timed(lookup: Lookup, flush: Flush | None, total: int) -> tuple[float, float]:
    """Lookups per second at 64 in flight and client CPU µs per lookup, the export of every
    span of the round included: a side's spans are not left to be sent in another's round."""
    cpu = time.process_time()
    started = time.perf_counter()
    await concurrent(lookup, total, 64)
    if flush is not None:
        await flush()
    return total / (time.perf_counter() - started), (time.process_time() - cpu) * 1e6 / total


async def bench_tracing(rounds: int = 30, total: int = 1000) -> list[str]:
    """Lookups per second at 64 in flight, traced and not; lines for the report."""
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _RECEIVER, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert receiver.stdout is not None
        url = f"http://127.0.0.1:{int(await receiver.stdout.readline())}"
        async with BillingServer() as server:
            env = {**os.environ, "BILLING_URL": server.url, "BILLING_API_KEY": server.api_key}
            os.environ["BILLING_API_KEY"] = server.api_key
            config = load_config(EXAMPLE, env=env)
            otel = otlp_observer(url, service_name="patchbay-bench")
            # For comparison: the same spans through the OpenTelemetry SDK's batch processor
            # and OTLP/HTTP exporter, the route `Tracing(provider)` takes.
            provider = TracerProvider()
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(url + "/v1/traces")))
            sdk = OtlpObserver(tracing=Tracing(provider))

            async def sdk_flush() -> None:
                await asyncio.to_thread(provider.force_flush)

            devnull = open(os.devnull, "w")  # noqa: SIM115, ASYNC230 - a null device does not block
            async with (
                ToolRuntime(config, sinks=[JsonLinesSink(devnull)]) as plain,
                ToolRuntime(config, sinks=[JsonLinesSink(devnull)], otel=otel) as traced,
                ToolRuntime(config, sinks=[JsonLinesSink(devnull)], otel=sdk) as on_sdk,
            ):
                sides = {
                    "off": (through_patchbay(plain), None),
                    "on": (through_patchbay(traced), otel.flush),
                    "sdk": (through_patchbay(on_sdk), sdk_flush),
                }
                for lookup, flush in sides.values():
                    await concurrent(lookup, 200, 64)  # warm connections and caches
                    if flush is not None:
                        await flush()
                await asyncio.sleep(1.0)  # an export a flush did not wait for lands first
                before = await asyncio.to_thread(_seen, url + "/stats")
                rates: dict[str, list[float]] = {side: [] for side in sides}
                cpu: dict[str, list[float]] = {side: [] for side in sides}
                for turn in range(rounds):
                    # Traced and untraced alternate first (ABBA): neither always follows the
                    # other. The SDK's far slower side runs in a third of the rounds.
                    names = ["off", "on"] if turn % 2 == 0 else ["on", "off"]
                    if turn % 3 == 2:
                        names.append("sdk")
                    for side in names:
                        lookup, flush = sides[side]
                        gc.collect()
                        rate, cpu_us = await _timed(lookup, flush, total)
                        rates[side].append(rate)
                        cpu[side].append(cpu_us)
                await asyncio.sleep(1.0)
                after = await asyncio.to_thread(_seen, url + "/stats")
            devnull.close()
            await asyncio.to_thread(otel.shutdown)
            await asyncio.to_thread(provider.shutdown)
    finally:
        receiver.terminate()
        await receiver.wait()
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    on_sdk = statistics.median(rates["sdk"])
    # Each round's traced rate against the untraced rate of the same round: the machine's
    # load drifts between rounds far more than within one.
    paired = statistics.median(a / b for a, b in zip(rates["on"], rates["off"], strict=True))
    with_sdk = rates["off"][2::3]  # the untraced rates of the rounds the SDK ran in
    paired_sdk = statistics.median(a / b for a, b in zip(rates["sdk"], with_sdk, strict=True))
    extra_cpu = statistics.median(a - b for a, b in zip(cpu["on"], cpu["off"], strict=True))
    spans = after["spans"] - before["spans"]
    expected = (rounds + len(rates["sdk"])) * total * 3
    return [
        f"tracing off: 64 in flight {off:.0f}/s; "
        f"client CPU per lookup {statistics.median(cpu['off']):.0f} µs",
        f"tracing on (OTLP/HTTP, posted in batches from a thread): 64 in flight {on:.0f}/s; "
        f"client CPU per lookup {statistics.median(cpu['on']):.0f} µs",
        f"tracing on / off: {paired:.3f}x (median of {rounds} rounds, each against its own "
        f"untraced rate; target >= 0.85x); tracing's CPU per lookup {extra_cpu:.0f} µs",
        f"for comparison, the same spans through the OpenTelemetry SDK (batch span processor, "
        f"OTLP/HTTP exporter): {on_sdk:.0f}/s, {paired_sdk:.3f}x; client CPU per lookup "
        f"{statistics.median(cpu['sdk']):.0f} µs",
        f"spans received by the collector: {spans} of {expected} "
        f"({after['exports'] - before['exports']} exports, "
        f"{(after['bytes'] - before['bytes']) / 1e6:.1f} MB)",
    ]
