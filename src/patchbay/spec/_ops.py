"""What operators set: the gateway (`gateway`) and observation (`observe`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from patchbay.spec._base import Frozen, SecretRef


class GatewayTenant(Frozen):
    """One tenant's own gateway credentials: a request bearing one of them runs as the tenant."""

    bearer: SecretRef | None = None
    retell_api_key: SecretRef | None = None
    elevenlabs_secret: SecretRef | None = None
    vapi_secret: SecretRef | None = None


class GatewayAuth(Frozen):
    """How gateway callers authenticate; the top-level secrets are the operator's."""

    bearer: SecretRef | None = None  # secret reference for `Authorization: Bearer`
    open: bool = False  # explicitly accept unauthenticated callers
    retell_api_key: SecretRef | None = None  # secret reference, verifies X-Retell-Signature
    elevenlabs_secret: SecretRef | None = None
    vapi_secret: SecretRef | None = None  # secret reference, compared with X-Vapi-Secret
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


class ObserveSpec(Frozen):
    """`observe`: the sinks a runtime built from the config writes to (each part optional)."""

    log: LogSpec = Field(default_factory=LogSpec)
    audit: AuditSpec | None = None
