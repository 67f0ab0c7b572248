"""The one place that decides retryability and maps statuses to error codes."""

from __future__ import annotations

import email.utils
import time

import pytest

from patchbay import ErrorCode
from patchbay.policies._classify import (
    error_for_status,
    is_retryable_status,
    may_resend,
    parse_retry_after,
)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_retryable(status: int) -> None:
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422])
def test_not_retryable(status: int) -> None:
    assert not is_retryable_status(status)


def test_resend_only_when_safe() -> None:
    assert may_resend("GET", None)
    assert may_resend("PUT", None)
    assert not may_resend("POST", None)
    assert not may_resend("PATCH", None)
    assert may_resend("POST", "call_1_invoice_2")


def test_retry_after_seconds_and_date() -> None:
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 60 ") == 60.0
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    parsed = parse_retry_after(when)
    assert parsed is not None and 28 <= parsed <= 31
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (404, ErrorCode.NOT_FOUND),
        (401, ErrorCode.UNAUTHORIZED),
        (403, ErrorCode.UNAUTHORIZED),
        (409, ErrorCode.CONFLICT),
        (422, ErrorCode.CLIENT_ERROR),
        (400, ErrorCode.CLIENT_ERROR),
        (429, ErrorCode.RATE_LIMITED),
        (503, ErrorCode.UPSTREAM_UNAVAILABLE),
    ],
)
def test_error_codes(status: int, code: ErrorCode) -> None:
    err = error_for_status(status, "words")
    assert err.code is code and err.status_code == status
