"""The cost of OpenTelemetry tracing: the example lookup at 64 in flight, traced against not.

Both runtimes run the same config against the same billing API (a separate process) in the
same rounds, interleaved. The traced one exports every span (one `execute_tool` and two client
spans per lookup) through the SDK's batch processor and OTLP/HTTP exporter to a receiver in
another process, which decodes and counts them: a rate bought by dropping spans would show.
A third runtime sends the same spans through the OpenTelemetry SDK (`Tracing(provider)` with
its batch span processor and OTLP/HTTP exporter), for comparison.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import urllib.request

from core import EXAMPLE, concurrent, through_patchbay
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from patchbay import ToolRuntime, load_config
from patchbay.observe import JsonLinesSink, OtlpObserver, Tracing, otlp_observer
from patchbay.testing import BillingServer

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


async def bench_tracing(rounds: int = 9, total: int = 2000) -> list[str]:
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
            devnull = open(os.devnull, "w")  # noqa: SIM115, ASYNC230 - a null device does not block
            async with (
                ToolRuntime(config, sinks=[JsonLinesSink(devnull)]) as plain,
                ToolRuntime(config, sinks=[JsonLinesSink(devnull)], otel=otel) as traced,
                ToolRuntime(config, sinks=[JsonLinesSink(devnull)], otel=sdk) as on_sdk,
            ):
                sides = {
                    "off": through_patchbay(plain),
                    "on": through_patchbay(traced),
                    "sdk": through_patchbay(on_sdk),
                }
                for lookup in sides.values():
                    await concurrent(lookup, 200, 64)  # warm connections and caches
                await otel.flush()
                await asyncio.to_thread(provider.force_flush)
                before = await asyncio.to_thread(_seen, url + "/stats")
                rates: dict[str, list[float]] = {side: [] for side in sides}
                cpu: dict[str, list[float]] = {side: [] for side in sides}
                for _ in range(rounds):
                    for side, lookup in sides.items():
                        rate, cpu_us = await concurrent(lookup, total, 64)
                        rates[side].append(rate)
                        cpu[side].append(cpu_us)
                await otel.flush()
                await asyncio.to_thread(provider.force_flush)
                after = await asyncio.to_thread(_seen, url + "/stats")
            devnull.close()
            await asyncio.to_thread(otel.shutdown)
            await asyncio.to_thread(provider.shutdown)
    finally:
        receiver.terminate()
        await receiver.wait()
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    on_sdk = statistics.median(rates["sdk"])
    spans = after["spans"] - before["spans"]
    expected = rounds * total * 3 * 2
    return [
        f"tracing off: 64 in flight {off:.0f}/s; "
        f"client CPU per lookup {statistics.median(cpu['off']):.0f} µs",
        f"tracing on (OTLP/HTTP, batched on a thread): 64 in flight {on:.0f}/s; "
        f"client CPU per lookup {statistics.median(cpu['on']):.0f} µs",
        f"tracing on / off: {on / off:.3f}x (target >= 0.85x)",
        f"for comparison, the same spans through the OpenTelemetry SDK (batch span processor, "
        f"OTLP/HTTP exporter): {on_sdk:.0f}/s, {on_sdk / off:.3f}x; client CPU per lookup "
        f"{statistics.median(cpu['sdk']):.0f} µs",
        f"spans received by the collector: {spans} of {expected} "
        f"({after['exports'] - before['exports']} exports, "
        f"{(after['bytes'] - before['bytes']) / 1e6:.1f} MB)",
    ]
