"""String formats an argument may declare (e164, email, date, date-time, uri), normalised.

Each checker takes the stripped string and returns its normal form, or raises BadValue with
words an LLM can act on (what is wrong and what to ask the caller for).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import date, datetime
from urllib.parse import urlsplit

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

from patchbay.spec._model import ParamFormat


class BadValue(Exception):
    """One argument value is wrong; `words` say how, for the LLM."""

    def __init__(self, words: str) -> None:
        super().__init__(words)
        self.words = words


_PHONE_WORDS = "is not a phone number; ask the caller for the full number including area code"
_PHONE_REASONS = {
    ValidationResult.TOO_SHORT: "is too short for a phone number; ask the caller for the full "
    "number including area code",
    ValidationResult.INVALID_LENGTH: _PHONE_WORDS,
    ValidationResult.TOO_LONG: "is too long for a phone number; ask the caller to repeat it",
    ValidationResult.INVALID_COUNTRY_CODE: "has an unknown country code; ask the caller for the "
    "full number including country code",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "has no area code; ask the caller for the full "
    "number including area code",
}


_EXTENSION_WORDS = (
    "has an extension; extensions are not supported, so give the number without the extension"
)
_PHONE_CHARACTERS_WORDS = (
    "is not a phone number: it may hold only digits, spaces and + - . ( ) /; "
    "ask the caller for the number's digits"
)
# What a written phone number is made of. phonenumbers itself skips letters and trailing text
# ("555-123-4567 ok", "1-800-FLOWERS"), which would pass a number the caller did not say.
_PHONE_PUNCTUATION = frozenset(" +-.()/")


def _phone_characters_ok(value: str) -> bool:
    # isdecimal: Arabic-Indic or full-width digits are digits too; the E.164 result is ASCII.
    return all(c.isdecimal() or c in _PHONE_PUNCTUATION for c in value)


# Parsing costs tens of microseconds and a call repeats the caller's number: keep a small,
# bounded cache (the numbers it holds are already in the live calls' contexts).
@functools.lru_cache(maxsize=1024)
def normalize_phone(value: str, region: str = "US") -> str:
    """A phone number in E.164 (`+15551234567`); numbers without `+` are read in `region`.

    A number with an extension ("x89", "ext. 89", ";ext=89") is refused: E.164 has no place
    for it, and dropping it silently would dial the wrong line.
    """
    try:
        number = phonenumbers.parse(value, region)
    except NumberParseException:
        number = None
    if number is not None and number.extension:
        raise BadValue(_EXTENSION_WORDS)
    if not _phone_characters_ok(value):
        raise BadValue(_PHONE_CHARACTERS_WORDS)
    if number is None:
        raise BadValue(_PHONE_WORDS)
    # Possible (right length for its country), not valid (assigned range): the example
    # call's number, 555-123-4567, is a fictional 555 number that is_valid_number rejects, and an
    # LLM-facing check must not refuse numbers the upstream may know (new ranges, test lines).
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != ValidationResult.IS_POSSIBLE:
        raise BadValue(_PHONE_REASONS.get(reason, _PHONE_WORDS))
    return str(phonenumbers.format_number(number, PhoneNumberFormat.E164))


def normalize_email(value: str) -> str:
    """An email address in its normal form (domain lower-cased); deliverability is not checked."""
    try:
        found = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise BadValue(
            f"is not a valid email address ({exc}); ask the caller to spell it out"
        ) from None
    return str(found.normalized)


# [0-9], not \d: \d also matches Arabic-Indic and full-width digits.
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


def normalize_date(value: str) -> str:
    """An ISO calendar date, YYYY-MM-DD."""
    # fromisoformat alone accepts 20240601 and week dates too; the schema promises YYYY-MM-DD.
    if not _DATE.fullmatch(value):
        raise BadValue("must be a date written YYYY-MM-DD, e.g. 2024-06-01")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise BadValue("is not a real calendar date; check the day and month") from None
    return value


def normalize_date_time(value: str) -> str:
    """An ISO 8601 date and time, e.g. 2024-06-01T14:30:00Z."""
    if not _DATE_TIME.match(value) or not value.isascii() or not value.isprintable():
        raise BadValue("must be a date and time in ISO 8601, e.g. 2024-06-01T14:30:00Z")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise BadValue(
            "is not a real date and time; use ISO 8601, e.g. 2024-06-01T14:30:00Z"
        ) from None
    return value


def normalize_uri(value: str) -> str:
    """An absolute http or https URL."""
    try:
        parts = urlsplit(value)
        host, _ = parts.hostname, parts.port  # port raises ValueError when malformed
        scheme = parts.scheme.lower()
    except ValueError:
        host, scheme = None, ""
    # urlsplit drops tabs and newlines and keeps control or bidi characters; none belong in a URL.
    printable = value.isprintable() and " " not in value
    if scheme not in ("http", "https") or not host or not printable:
        raise BadValue("must be an absolute http or https URL, e.g. https://example.com/page")
    return value


_CHECKERS: dict[str, Callable[[str, str], str]] = {
    "e164": normalize_phone,
    "email": lambda value, _region: normalize_email(value),
    "date": lambda value, _region: normalize_date(value),
    "date-time": lambda value, _region: normalize_date_time(value),
    "uri": lambda value, _region: normalize_uri(value),
}


def check_format(fmt: ParamFormat, value: str, region: str = "US") -> str:
    """Check `value` against a declared format and return its normal form, or raise BadValue."""
    return _CHECKERS[fmt](value.strip(), region)


def format_checker(fmt: ParamFormat) -> Callable[[str, str], str]:
    """The checker of one format, looked up once per parameter rather than per call."""
    return _CHECKERS[fmt]
