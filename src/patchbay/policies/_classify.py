"""The one place that decides what is retryable and what an upstream status means."""

from __future__ import annotations

import email.utils
import time

from patchbay._errors import (
    ClientError,
    Conflict,
    NotFound,
    RateLimited,
    Unauthorized,
    UpstreamError,
    UpstreamUnavailable,
)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def is_retryable_status(status: int) -> bool:
    """5xx, 408 and 429 may succeed later; other 4xx never will."""
    return status in RETRYABLE_STATUS or status >= 500


def is_failure_status(status: int) -> bool:
    """Whether a status counts against the upstream's health (breaker); 4xx do not."""
    return status >= 500


def may_resend(method: str, idempotency_key: str | None) -> bool:
    """A request may be sent again only if doing so cannot repeat a side effect."""
    return method in _IDEMPOTENT_METHODS or idempotency_key is not None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None if absent/garbled."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_for_status(status: int, message: str, **fields: object) -> UpstreamError:
    """The ToolError class for a final upstream error status."""
    cls: type[UpstreamError]
    if status in (404, 410):
        cls = NotFound
    elif status in (401, 403):
        cls = Unauthorized
    elif status in (409, 412):
        cls = Conflict
    elif status == 429:
        cls = RateLimited
    elif status >= 500 or status == 408:
        cls = UpstreamUnavailable
    else:
        cls = ClientError
    return cls(message, status_code=status, **fields)  # type: ignore[arg-type]
