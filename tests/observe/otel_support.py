"""A real OTLP/HTTP receiver on loopback, and a recording hop in front of the billing API."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, Self

import aiohttp
import uvicorn
from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

PROTOBUF = "application/x-protobuf"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def value(any_value: AnyValue) -> Any:
    """The Python value of an OTLP attribute value."""
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind is not None else None


def attrs(span: Span | Any) -> dict[str, Any]:
    """A span's (or an event's) attributes as a dict."""
    return {kv.key: value(kv.value) for kv in span.attributes}


class OtlpReceiver:
    """Accepts POST /v1/traces and /v1/metrics as a collector does, decoding every export.

    `raw` keeps every body exactly as it arrived, to look for values that must never be sent.
    """

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.raw: list[bytes] = []
        self.spans: list[Span] = []
        self.resources: list[dict[str, Any]] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None

    async def _body(self, request: web.Request) -> bytes:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.raw.append(body)
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        return body

    async def _traces(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest.FromString(await self._body(request))
        for resource_spans in export.resource_spans:
            self.resources.append(attrs(resource_spans.resource))
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        answer = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=answer, content_type=PROTOBUF)

    async def _metrics(self, request: web.Request) -> web.Response:
        self.metrics.append(ExportMetricsServiceRequest.FromString(await self._body(request)))
        answer = ExportMetricsServiceResponse().SerializeToString()
        return web.Response(body=answer, content_type=PROTOBUF)

    def named(self, prefix: str) -> list[Span]:
        """The spans whose name starts with `prefix`, in the order they ended."""
        return [s for s in self.spans if s.name.startswith(prefix)]

    def children(self, parent: Span) -> list[Span]:
        """The spans whose parent is `parent`."""
        return [
            s
            for s in self.spans
            if s.trace_id == parent.trace_id and s.parent_span_id == parent.span_id
        ]

    def metric_names(self) -> set[str]:
        """Every metric name received."""
        return {
            metric.name
            for export in self.metrics
            for rm in export.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
        }

    def everything(self) -> bytes:
        """Every byte received, for checks that a value was never sent."""
        return b"".join(self.raw)

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class RecordingHop:
    """A plain forwarder in front of an upstream that keeps the headers of every request.

    The upstream (the example billing API) answers; the test reads what reached it.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        self.seen.append((request.method, request.path, dict(request.headers)))
        skip = ("host", "accept-encoding", "content-length", "transfer-encoding")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=await request.read() or None,
        ) as answer:
            body = await answer.read()
            kind = answer.headers.get("Content-Type", "application/json")
            return web.Response(status=answer.status, body=body, headers={"Content-Type": kind})

    def traceparents(self) -> Iterator[str]:
        """The `traceparent` of every request that reached the upstream, in order."""
        for _, _, headers in self.seen:
            found = {k.lower(): v for k, v in headers.items()}.get("traceparent")
            if found is not None:
                yield found

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port, in this event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the gateway did not start")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
