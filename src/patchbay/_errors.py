"""The exception tree of patchbay.

PatchbayError
├── ConfigError                 a config file or Python tool definition is wrong (has `location`)
├── SecretError                 a secret reference cannot be resolved (never carries the value)
├── StateError                  the state store failed (StateUnavailable, StateTypeError)
└── ToolError                   a tool call failed; `code` is one of the result error codes
    ├── InvalidArguments        code invalid_arguments; `fields` maps field -> words for the LLM
    ├── OperationNotAllowed     code internal; a handler asked for an undeclared method/path
    ├── UpstreamError           the upstream answered with an error status (`status_code`)
    │   ├── NotFound            code not_found (404, 410)
    │   ├── Unauthorized        code unauthorized (401, 403)
    │   ├── Conflict            code conflict (409, 412)
    │   ├── ClientError         code client_error (other 4xx)
    │   ├── RateLimited         code rate_limited (429, or our own limiter); `retry_after_s`
    │   └── UpstreamUnavailable code upstream_unavailable (5xx, network errors, bad bodies)
    ├── DeadlineExceeded        code timeout; the tool's latency budget ran out
    ├── OutcomePending          code pending; a write was sent and its outcome is not known yet
    ├── CircuitOpen             code circuit_open
    ├── QuotaExceeded           code quota_exceeded
    └── TenantRefused           code unauthorized; the integration does not serve the tenant

Every ToolError carries structured fields (`tool`, `call_id`, `status_code`, `retryable`) so
the runtime can turn it into a ToolResult without parsing messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class ErrorCode(StrEnum):
    """Error codes of the tool result contract."""

    INVALID_ARGUMENTS = "invalid_arguments"
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    CONFLICT = "conflict"
    CLIENT_ERROR = "client_error"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    PENDING = "pending"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    CIRCUIT_OPEN = "circuit_open"
    QUOTA_EXCEEDED = "quota_exceeded"
    INTERNAL = "internal"


class PatchbayError(Exception):
    """Base of every error patchbay raises."""


class ConfigError(PatchbayError):
    """A configuration mistake, reported with where it is (`tools.x.request.path`)."""

    def __init__(self, message: str, location: str = "") -> None:
        self.message = message
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


class ConfigErrors(ConfigError):
    """Several configuration mistakes found at once."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


class SecretError(PatchbayError):
    """A secret reference that cannot be resolved; the message names the reference only."""


class ToolError(PatchbayError):
    """A tool call failed in a way the LLM should hear about in words."""

    code: ErrorCode = ErrorCode.INTERNAL
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        tool: str | None = None,
        call_id: str | None = None,
        status_code: int | None = None,
        retryable: bool | None = None,
        fields: Mapping[str, str] | None = None,
        upstream_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.tool = tool
        self.call_id = call_id
        self.status_code = status_code
        if retryable is not None:
            self.retryable = retryable
        self.fields: dict[str, str] = dict(fields or {})
        self.upstream_code = upstream_code


class InvalidArguments(ToolError):
    """The LLM's arguments broke the tool's schema or rules; no request was made."""

    code = ErrorCode.INVALID_ARGUMENTS


class OperationNotAllowed(ToolError):
    """A handler asked for a method and path its integration does not declare."""

    code = ErrorCode.INTERNAL


class UpstreamError(ToolError):
    """The upstream API answered with an error."""

    code = ErrorCode.CLIENT_ERROR


class NotFound(UpstreamError):
    """The upstream has no such thing."""

    code = ErrorCode.NOT_FOUND


class Unauthorized(UpstreamError):
    """The upstream refused our credentials."""

    code = ErrorCode.UNAUTHORIZED


class Conflict(UpstreamError):
    """The upstream reported a conflicting state."""

    code = ErrorCode.CONFLICT


class ClientError(UpstreamError):
    """Any other 4xx answer; never retried."""

    code = ErrorCode.CLIENT_ERROR


class RateLimited(UpstreamError):
    """Too many requests, upstream (429) or by our own limiter."""

    code = ErrorCode.RATE_LIMITED
    retryable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s


class UpstreamUnavailable(UpstreamError):
    """5xx, network failure or an unreadable answer."""

    code = ErrorCode.UPSTREAM_UNAVAILABLE
    retryable = True


class DeadlineExceeded(ToolError):
    """The tool's latency budget ran out."""

    code = ErrorCode.TIMEOUT
    retryable = True


class OutcomePending(ToolError):
    """A write may have reached the upstream and no definitive answer came back.

    It must not be sent again by the caller; with an idempotency key patchbay confirms it in
    the background and records the outcome.
    """

    code = ErrorCode.PENDING
    retryable = False


class CircuitOpen(ToolError):
    """The integration's circuit breaker is open; no request was made."""

    code = ErrorCode.CIRCUIT_OPEN
    retryable = True


class QuotaExceeded(ToolError):
    """A quota (per day, per call) is used up; no request was made."""

    code = ErrorCode.QUOTA_EXCEEDED


class TenantRefused(ToolError):
    """The call's tenant is not one the integration serves; no request was made."""

    code = ErrorCode.UNAUTHORIZED
