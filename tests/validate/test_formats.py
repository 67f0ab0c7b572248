"""Formats: phone numbers to E.164, emails normalised, ISO dates, http(s) URLs."""

from __future__ import annotations

import pytest

from patchbay._errors import InvalidArguments
from patchbay.spec._call import CallContext
from patchbay.spec._model import Tool
from patchbay.validate import BadValue, check_format, validate_arguments

CALL = CallContext(id="c-1")


def tool_with(**param: object) -> Tool:
    return Tool.model_validate(
        {
            "name": "t",
            "integration": "i",
            "description": "d",
            "parameters": {"value": {"type": "string", **param}},
            "request": {"path": "/x"},
        }
    )


PHONE = tool_with(format="e164")


@pytest.mark.parametrize(
    ("given", "e164"),
    [
        ("555-123-4567", "+15551234567"),  # the billing example: a fictional 555 number
        ("(555) 123-4567", "+15551234567"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+1 415 555 2671", "+14155552671"),
        ("  555.123.4567 ", "+15551234567"),
    ],
)
def test_phone_numbers_are_normalised_to_e164(given: str, e164: str) -> None:
    assert validate_arguments(PHONE, {"value": given}, CALL) == {"value": e164}


@pytest.mark.parametrize("given", ["12", "hello", "+1555", "", "123-4567", "+999 1234 5678"])
def test_impossible_phone_numbers_are_rejected_with_advice(given: str) -> None:
    with pytest.raises(InvalidArguments) as info:
        validate_arguments(PHONE, {"value": given}, CALL)
    words = info.value.fields["value"]
    assert "phone number" in words or "code" in words
    assert words.startswith(("is not", "is too", "has "))
    assert "ask the caller" in words


def test_region_of_the_parameter_beats_the_default() -> None:
    uk = tool_with(format="e164", region="GB")
    assert validate_arguments(uk, {"value": "020 7946 0958"}, CALL) == {"value": "+442079460958"}
    cleaned = validate_arguments(PHONE, {"value": "020 7946 0958"}, CALL, default_region="GB")
    assert cleaned == {"value": "+442079460958"}
    with pytest.raises(InvalidArguments):
        validate_arguments(PHONE, {"value": "020 7946 0958"}, CALL)  # not a US number


def test_emails_are_normalised() -> None:
    email = tool_with(format="email")
    assert validate_arguments(email, {"value": " Jamie@Example.COM "}, CALL) == {
        "value": "Jamie@example.com"
    }


@pytest.mark.parametrize(
    "given", ["jamie", "jamie@", "a@@b.com", "jamie@localhost", "j amie@x.com"]
)
def test_bad_emails_are_rejected(given: str) -> None:
    email = tool_with(format="email")
    with pytest.raises(InvalidArguments) as info:
        validate_arguments(email, {"value": given}, CALL)
    words = info.value.fields["value"]
    assert words.startswith("is not a valid email address")
    assert words.endswith("ask the caller to spell it out")


def test_dates() -> None:
    assert check_format("date", "2024-02-29") == "2024-02-29"
    for bad in ("2024-02-30", "20240601", "2024-W01-1", "June 1", "2024-6-1"):
        with pytest.raises(BadValue):
            check_format("date", bad)


def test_date_times() -> None:
    for good in ("2024-06-01T14:30:00Z", "2024-06-01T14:30:00+02:00", "2024-06-01 14:30"):
        assert check_format("date-time", good) == good
    for bad in ("2024-06-01", "2024-06-01T25:00:00", "tomorrow at 3"):
        with pytest.raises(BadValue):
            check_format("date-time", bad)


def test_uris() -> None:
    assert check_format("uri", "https://example.com/a?b=1") == "https://example.com/a?b=1"
    for bad in (
        "ftp://example.com",
        "example.com",
        "https://",
        "http://exa mple.com",
        "http://h:x",
    ):
        with pytest.raises(BadValue) as info:
            check_format("uri", bad)
        assert "http or https URL" in info.value.words


def test_format_runs_before_pattern_and_length() -> None:
    tool = tool_with(format="e164", pattern=r"^\+1", max_length=13)
    assert validate_arguments(tool, {"value": "(555) 123-4567"}, CALL) == {"value": "+15551234567"}
    with pytest.raises(InvalidArguments) as info:
        validate_arguments(tool, {"value": "+44 20 7946 0958"}, CALL)
    assert "expected form" in info.value.fields["value"]
