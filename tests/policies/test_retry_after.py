"""Retry-After from a hostile upstream: any value gives seconds in [0, a day] or None, no error."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patchbay.policies._classify import parse_retry_after

DAY = 86400.0
NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    "value",
    [
        "\u00b2",  # a digit to str.isdigit, not to float
        "\u0663",  # ARABIC-INDIC DIGIT THREE: float() reads it, HTTP does not
        "-5",
        "NaN",
        "inf",
        "1e9",
        "1.5",
        "",
        "Mon, 01 Jan 2020 00:00:00 +" + "9" * 20,  # an offset too large for C
        "Fri, 31 Dec 99999 23:59:59 GMT",
        "Mon, 32 Jan 2020 00:00:00 GMT",
        "x" * 100_000,
    ],
)
def test_a_garbled_value_is_none(value: str) -> None:
    assert parse_retry_after(value, NOW) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        ("9" * 400, DAY),
        ("9" * 10_000, DAY),
        ("Fri, 31 Dec 9999 23:59:59 GMT", DAY),
        ("Mon, 01 Jan 0001 00:00:00 GMT", 0.0),
        (email.utils.formatdate(NOW - 60, usegmt=True), 0.0),
        (email.utils.formatdate(NOW + 90, usegmt=True), 90.0),
    ],
)
def test_a_value_is_bounded_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, NOW) == seconds


@given(st.text(max_size=80))
def test_no_text_makes_it_raise(value: str) -> None:
    found = parse_retry_after(value, NOW)
    assert found is None or 0.0 <= found <= DAY
