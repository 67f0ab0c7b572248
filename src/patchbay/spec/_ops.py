"""What operators set: the gateway (`gateway`) and observation (`observe`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator, model_validator

from patchbay.spec._base import HEADER_NAME, Frozen, SecretRef, _reference

_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")
# Headers the OTLP exporter writes itself: `observe.otlp.headers` may not set them.
OTLP_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


_MAX_ROTATING = 4


def _one_or_list(value: Any) -> str | list[str] | None:
    # Validated by hand: pydantic's union errors would quote the input, a literal secret included.
    if value is None:
        return None
    if isinstance(value, str):
        return _reference(value)
    if isinstance(value, list) and 1 <= len(value) <= _MAX_ROTATING:
        refs = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"item {i}: expected a secret reference like env:NAME")
            try:
                refs.append(_reference(item))
            except ValueError as exc:
                raise ValueError(f"item {i}: {exc}") from None
        return refs
    raise ValueError(
        f"expected a secret reference, or a list of 1 to {_MAX_ROTATING} of them while a "
        "credential is rotated"
    )


# A gateway credential: one reference, or a list of them while a credential is rotated (the old
# and the new value are both accepted until the old one is removed from the list).
GatewaySecret = Annotated[SecretRef | list[SecretRef] | None, PlainValidator(_one_or_list)]


class GatewayTenant(Frozen):
    """One tenant's own gateway credentials: a request bearing one of them runs as the tenant."""

    bearer: GatewaySecret = None
    retell_api_key: GatewaySecret = None
    elevenlabs_secret: GatewaySecret = None
    vapi_secret: GatewaySecret = None


class GatewayAuth(Frozen):
    """How gateway callers authenticate; the top-level secrets are the operator's."""

    bearer: GatewaySecret = None  # secret reference(s) for `Authorization: Bearer`
    open: bool = False  # explicitly accept unauthenticated callers
    retell_api_key: GatewaySecret = None  # reference(s), verify X-Retell-Signature
    elevenlabs_secret: GatewaySecret = None
    vapi_secret: GatewaySecret = None  # reference(s), compared with X-Vapi-Secret
    tenants: dict[str, GatewayTenant] = Field(default_factory=dict)  # credentials bound to one


class GatewaySpec(Frozen):
    """Settings of `patchbay serve`."""

    auth: GatewayAuth = Field(default_factory=GatewayAuth)
    public_url: str | None = None  # where platforms reach the gateway, for exports
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    # Longest wait for a request's headers, and for its body, before the connection is closed.
    read_timeout_s: float = Field(default=10.0, gt=0, le=300)
    # Tool calls of one platform message (Vapi) that run; each one past it gets an error.
    max_tool_calls_per_message: int = Field(default=16, ge=1, le=1000)


class Defaults(Frozen):
    """Project-wide defaults."""

    phone_region: str = "US"


class LogSpec(Frozen):
    """`observe.log`: the level of patchbay's loggers and whether tool bodies are logged."""

    level: Literal["debug", "info", "warning", "error"] | None = None  # None: leave as is
    # none: no bodies; shape: keys and types; redacted: values, secrets and PII masked
    bodies: Literal["none", "shape", "redacted"] = "none"


class AuditSpec(Frozen):
    """`observe.audit`: the hash-chained audit trail, one line per tool call."""

    path: str
    key: SecretRef | None = None  # HMAC key: without it nobody can recompute the chain
    rotate_bytes: int | None = Field(default=None, ge=1024)  # start a new file past this size


class JsonLinesSpec(Frozen):
    """`observe.jsonl`: every event as one redacted JSON line, appended to a file."""

    path: str = Field(min_length=1)


class PrometheusSpec(Frozen):
    """`observe.prometheus`: Prometheus metrics of every tool call.

    `patchbay serve` answers them at `/metrics` (with or without this block); with `path` they
    are also written to that file in the text format (for node_exporter's textfile collector),
    which is how `patchbay call` and `mcp`, having no HTTP server, publish them: at most every
    `interval_s` while calls end, and once more at exit.
    """

    path: str | None = Field(default=None, min_length=1)
    interval_s: float = Field(default=15.0, gt=0, le=3600)


def _collector_url(value: str) -> str:
    if not _URL.fullmatch(value):
        raise ValueError("expected the collector's OTLP/HTTP base URL, like http://127.0.0.1:4318")
    return value


class OtlpSpec(Frozen):
    """`observe.otlp`: traces (and metrics) sent to an OpenTelemetry collector over OTLP/HTTP."""

    endpoint: Annotated[str, AfterValidator(_collector_url)]
    traces: bool = True
    metrics: bool = False
    service_name: str = Field(default="patchbay", min_length=1, max_length=200)
    headers: dict[str, SecretRef] = Field(default_factory=dict)  # e.g. an API key, by reference

    @model_validator(mode="after")
    def _sends_something(self) -> OtlpSpec:
        if not (self.traces or self.metrics):
            raise ValueError("sends nothing: set traces or metrics to true, or remove otlp")
        return self

    @model_validator(mode="after")
    def _sendable_headers(self) -> OtlpSpec:
        for name in self.headers:
            if not HEADER_NAME.fullmatch(name):
                raise ValueError(f"header {name!r} is not a valid HTTP header name")
            if name.lower() in OTLP_OWN_HEADERS:
                raise ValueError(f"header {name!r} is set by the exporter itself")
        return self


def _jsonl_shorthand(value: Any) -> Any:
    """`jsonl: events.jsonl` is `jsonl: {path: events.jsonl}`."""
    if isinstance(value, str):
        return {"path": value}
    if value is None or isinstance(value, Mapping | JsonLinesSpec):
        return value
    raise ValueError("expected a file path or a mapping like {path: events.jsonl}")


def _prometheus_shorthand(value: Any) -> Any:
    """`prometheus: true` is `{}` (metrics on, no file); `false` is no block at all."""
    if isinstance(value, bool):
        return {} if value else None
    if value is None or isinstance(value, Mapping | PrometheusSpec):
        return value
    raise ValueError("expected true, false or a mapping like {path: metrics.prom}")


class ObserveSpec(Frozen):
    """`observe`: the sinks a runtime built from the config writes to (each part optional)."""

    log: LogSpec = Field(default_factory=LogSpec)
    audit: AuditSpec | None = None
    jsonl: Annotated[JsonLinesSpec | None, BeforeValidator(_jsonl_shorthand)] = None
    prometheus: Annotated[PrometheusSpec | None, BeforeValidator(_prometheus_shorthand)] = None
    otlp: OtlpSpec | None = None
