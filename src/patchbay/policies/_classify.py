"""The one place that decides what is retryable and what an upstream status means."""

from __future__ import annotations

import email.utils
import math
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
from patchbay.http._types import ConnectError, Response, ResponseTooLarge, TransportError

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_UNSETTLED = frozenset({401, 403, 408, 429})
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
MAX_RETRY_AFTER_S = 86400.0  # a Retry-After past a day says nothing more to a phone call
_MAX_DATE_CHARS = 64  # an HTTP-date has 29


def is_retryable_status(status: int) -> bool:
    """5xx, 408 and 429 may succeed later; other 4xx never will."""
    return status in RETRYABLE_STATUS or status >= 500


def is_failure_status(status: int) -> bool:
    """Whether a status counts against the upstream's health (breaker); 4xx do not."""
    return status >= 500


def may_have_arrived(exc: BaseException) -> bool:
    """Whether a send that failed with `exc` may have reached the upstream anyway.

    A timeout or a reset after connecting leaves a write's fate unknown; a refused connection
    (and anything that stopped it before the transport: breaker, limiter, quota) sent nothing.
    An answer too large to read arrived, but only a 4xx status says that nothing changed.
    """
    if isinstance(exc, ResponseTooLarge):
        status = exc.status_code
        return status is None or not 400 <= status < 500
    return isinstance(exc, TransportError | TimeoutError) and not isinstance(exc, ConnectError)


def settles_write(status: int) -> bool:
    """Whether an answer says for certain what became of a write: done, or refused for good.

    5xx may come after the change was made; 401, 403, 408 and 429 refuse this attempt without
    saying anything about one sent before with the same key.
    """
    return status < 500 and status not in _UNSETTLED


def settles_answer(response: Response) -> bool:
    """`settles_write`, and a 2xx must be readable: one whose body is not JSON may have been
    made up by a proxy that never forwarded the write, so it proves nothing.
    """
    if not settles_write(response.status):
        return False
    if response.status >= 300 or not response.body:
        return True
    media = (response.header("content-type") or "").split(";", 1)[0].strip().lower()
    if media.endswith(("/xml", "+xml")):
        return True  # an XML API's own answer (SOAP): proxies make up HTML, not XML
    try:
        response.json()
    except UpstreamUnavailable:
        return False
    return True


def may_resend(method: str, idempotency_key: str | None) -> bool:
    """A request may be sent again only if doing so cannot repeat a side effect."""
    return method in _IDEMPOTENT_METHODS or idempotency_key is not None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None if absent/garbled.

    Never raises, whatever the upstream sends; the answer is within [0, one day].
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit alone takes '²' and '٣'
        return min(float(value), MAX_RETRY_AFTER_S)  # float: no limit on digits, inf at most
    if len(value) > _MAX_DATE_CHARS:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
        delta = when.timestamp() - (time.time() if now is None else now)
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None  # a date out of range, a zone offset of twenty digits, ...
    if not math.isfinite(delta):
        return None
    return min(max(0.0, delta), MAX_RETRY_AFTER_S)


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


# GraphQL servers (Apollo, Strawberry, Ariadne, Hasura...) put these in `errors[].extensions.code`.
_GRAPHQL_CODES: dict[str, type[UpstreamError]] = {
    "NOT_FOUND": NotFound,
    "UNAUTHENTICATED": Unauthorized,
    "FORBIDDEN": Unauthorized,  # the contract has no forbidden: refused, do not try again
    "BAD_USER_INPUT": ClientError,
    "BAD_REQUEST": ClientError,
    "GRAPHQL_PARSE_FAILED": ClientError,
    "GRAPHQL_VALIDATION_FAILED": ClientError,
    "OPERATION_RESOLUTION_FAILURE": ClientError,
    "PERSISTED_QUERY_NOT_FOUND": ClientError,
    "CONFLICT": Conflict,
    "ALREADY_EXISTS": Conflict,
    "RATE_LIMITED": RateLimited,
    "TOO_MANY_REQUESTS": RateLimited,
}


def is_graphql_code_known(code: str | None) -> bool:
    """Whether `code` (an `extensions.code`) has a meaning of its own in the contract."""
    return code is not None and code.upper() in _GRAPHQL_CODES


def error_for_graphql(code: str | None, message: str, **fields: object) -> UpstreamError:
    """The ToolError class for a GraphQL error in a 2xx answer, by its `extensions.code`.

    Unknown codes (INTERNAL_SERVER_ERROR, none at all) are the upstream's own failure.
    """
    cls = _GRAPHQL_CODES.get((code or "").upper(), UpstreamUnavailable)
    return cls(message, **fields)  # type: ignore[arg-type]
