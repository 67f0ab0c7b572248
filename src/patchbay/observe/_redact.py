"""Scrub secrets and caller PII from anything that is about to be written out."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from patchbay.http._secrets import known_secret_values

# Hand-written rather than a library: the patterns are few and must run on every event.
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<![\w])\+?\d[\d\s().-]{6,}\d(?![\w])")
# Four dotted groups of 1-3 digits is an IPv4 address (a host people need to see in a
# connection failure), not a phone number: those end in a group of four digits.
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_SENSITIVE_KEYS = frozenset(
    {
        "authorization",
        "x-api-key",
        "api_key",
        "apikey",
        "password",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "client_secret",
        "cookie",
        "set-cookie",
        "caller",
        "phone",
        "email",
    }
)
REDACTED = "[redacted]"


class Redactor:
    """Replaces known secret values, auth tokens, phone numbers and emails in text and data."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Callable[[], Iterable[str]] | None = None) -> None:
        self._secrets = secrets or known_secret_values

    def text(self, value: str) -> str:
        """Redact one string."""
        for secret in self._secrets():
            if secret and len(secret) >= 4 and secret in value:
                value = value.replace(secret, REDACTED)
        value = _BEARER.sub(r"\1 " + REDACTED, value)
        value = _EMAIL.sub(REDACTED, value)
        return _PHONE.sub(_phone, value)

    def secrets_only(self, value: str) -> str:
        """Redact secret values, auth tokens and emails, but keep digit runs (ids, amounts)."""
        for secret in self._secrets():
            if secret and len(secret) >= 4 and secret in value:
                value = value.replace(secret, REDACTED)
        value = _BEARER.sub(r"\1 " + REDACTED, value)
        return _EMAIL.sub(REDACTED, value)

    @staticmethod
    def sensitive(key: str) -> bool:
        """Whether values under this key are dropped whole (credentials, caller contact)."""
        return key.lower() in _SENSITIVE_KEYS

    def data(self, value: Any, key: str | None = None) -> Any:
        """Redact a JSON-like value; values under sensitive keys are dropped whole."""
        if key is not None and key.lower() in _SENSITIVE_KEYS and value is not None:
            return REDACTED
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.data(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


def _phone(match: re.Match[str]) -> str:
    return match.group(0) if _IPV4.fullmatch(match.group(0)) else REDACTED
