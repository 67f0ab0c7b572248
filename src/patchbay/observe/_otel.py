"""OpenTelemetry export over OTLP/HTTP: traces of every tool call, and optional OTel metrics.

    from patchbay.observe import otlp_observer
    otel = otlp_observer("http://127.0.0.1:4318", metrics=True, service_name="voice-gateway")
    runtime = ToolRuntime(config, otel=otel)

This module imports without OpenTelemetry installed: the SDK (the `otel` extra) is imported
when `otlp_observer` is called, so patchbay runs, and starts as fast, without it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from patchbay import __version__
from patchbay.observe._events import EventSink

if TYPE_CHECKING:
    from patchbay.observe._trace_api import Tracer

__all__ = ["OtlpObserver", "otlp_observer"]

log = logging.getLogger("patchbay.observe")

_MISSING = (
    "OpenTelemetry export needs the `otel` extra: pip install 'patchbay[otel]' "
    "(opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http)"
)


@dataclass(frozen=True, slots=True)
class OtlpObserver:
    """What a runtime takes to trace (`tracing`) and to record OTel metrics (`metrics`).

    Pass it as `ToolRuntime(config, otel=...)`. The runtime flushes it when it closes;
    `shutdown()` stops the exporters for good (also done at interpreter exit).
    """

    tracing: Tracer | None = None
    metrics: EventSink | None = None
    _flush: tuple[Callable[[], object], ...] = field(default=(), repr=False)
    _shutdown: tuple[Callable[[], object], ...] = field(default=(), repr=False)

    async def flush(self, timeout_s: float = 5.0) -> None:
        """Export what is still buffered, waiting at most `timeout_s` (a collector that hangs
        must not hold a shutdown up; the export goes on in its thread)."""
        if not self._flush:
            return
        # In a thread: the exporters send synchronously.
        export = asyncio.ensure_future(asyncio.to_thread(self.flush_sync))
        try:
            await asyncio.wait_for(asyncio.shield(export), timeout_s)
        except TimeoutError:
            log.warning("otlp: the collector did not take the last spans within %g s", timeout_s)

    def flush_sync(self) -> None:
        """`flush` for code outside an event loop (blocking until the collector answers)."""
        for flush in self._flush:
            try:
                flush()
            except Exception as exc:  # observation must never fail a shutdown
                log.warning("otlp: export failed: %s", type(exc).__name__)

    def shutdown(self) -> None:
        """Flush and stop the exporters (blocking; outside the event loop or in a thread)."""
        for stop in self._shutdown:
            stop()


def otlp_observer(
    endpoint: str,
    *,
    traces: bool = True,
    metrics: bool = False,
    service_name: str = "patchbay",
    headers: dict[str, str] | None = None,
) -> OtlpObserver:
    """Export patchbay's traces (and with `metrics`, OTel metrics) to an OTLP/HTTP endpoint.

    `endpoint` is the collector's base URL (`http://127.0.0.1:4318`); `/v1/traces` and
    `/v1/metrics` are added. `headers` go to the collector only (its API key, say).
    Spans leave in batches from a thread, off the event loop. Raises ValueError for an
    endpoint that is not an http(s) URL or a header that cannot be sent (a framing header,
    a control character, a character beyond Latin-1), RuntimeError when the `otel` extra is
    missing.

    To send patchbay's spans through an OpenTelemetry SDK pipeline of your own instead, pass
    `OtlpObserver(tracing=Tracing(your_tracer_provider))`.
    """
    base = _base_url(endpoint)
    if not service_name or not isinstance(service_name, str):
        raise ValueError("otlp service_name must be a non-empty string")
    try:
        # Imported here, not at the top: the SDK is an optional extra and costs start-up time.
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource

        from patchbay.observe._otel_metrics import OtelMetricsSink
        from patchbay.observe._otlp import OtlpTracer
        from patchbay.observe._otlp_export import SpanShipper
    except ImportError as exc:
        raise RuntimeError(f"{_MISSING} ({exc})") from None
    resource = Resource.create({SERVICE_NAME: service_name})
    sent = dict(headers or {})
    flushes: list[Callable[[], object]] = []
    stops: list[Callable[[], object]] = []
    tracing = sink = None
    if traces:
        shipper = SpanShipper(
            f"{base}/v1/traces",
            sent,
            {
                k: v
                for k, v in resource.attributes.items()
                if isinstance(v, str | bool | int | float)
            },
            __version__,
        )
        tracing = OtlpTracer(shipper)
        flushes.append(shipper.flush)
        stops.append(shipper.shutdown)
    if metrics:
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{base}/v1/metrics", headers=sent)
        )
        meters = MeterProvider(resource=resource, metric_readers=[reader])
        sink = OtelMetricsSink(meters)
        flushes.append(meters.force_flush)  # type: ignore[arg-type]
        stops.append(meters.shutdown)
    return OtlpObserver(tracing, sink, tuple(flushes), tuple(stops))


def _base_url(endpoint: str) -> str:
    """The collector's base URL, without a trailing slash or an OTLP signal path."""
    if not isinstance(endpoint, str):
        raise ValueError(f"otlp endpoint must be a URL string, not {type(endpoint).__name__}")
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        # The value itself is not repeated: a URL may carry credentials.
        shown = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise ValueError(
            f"otlp endpoint must be an http(s) URL like http://127.0.0.1:4318 (got {shown}"
            f"{'' if parts.netloc else ', no host'})"
        )
    if parts.query or parts.fragment:
        raise ValueError("otlp endpoint must not have a query or a fragment")
    path = parts.path.rstrip("/")
    for signal in ("/v1/traces", "/v1/metrics"):
        path = path.removesuffix(signal)
    return f"{parts.scheme}://{parts.netloc}{path}"
