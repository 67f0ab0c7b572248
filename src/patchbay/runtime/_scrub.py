"""Secret values scrubbed from what the LLM reads, in every form an upstream may echo them."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import msgspec

from patchbay.http._secrets import known_secret_values
from patchbay.observe._redact import REDACTED
from patchbay.spec import Config
from patchbay.spec._auth import BasicAuth

_encode = msgspec.json.Encoder().encode
_MIN_LEN = 4  # shorter values would redact ordinary words; the log redactor agrees


def _b64(text: str) -> Iterator[str]:
    raw = text.encode()
    # Unpadded: the form stays findable whatever follows it in a longer base64 text.
    yield base64.b64encode(raw).decode().rstrip("=")
    yield base64.urlsafe_b64encode(raw).decode().rstrip("=")


def secret_forms(values: frozenset[str], usernames: tuple[str, ...]) -> set[str]:
    """Every form of the values an upstream might echo: raw, URL-encoded, base64, basic auth."""
    forms: set[str] = set()
    for value in values:
        if len(value) < _MIN_LEN:
            continue
        forms.update((value, quote(value, safe=""), quote_plus(value)))
        forms.update(_b64(value))
        for user in usernames:
            forms.update(_b64(f"{user}:{value}"))
    return {f for f in forms if len(f) >= _MIN_LEN}


class SecretScrubber:
    """Replaces secret values in a result before it is handed to the LLM.

    Runs on every call, so the common case is one encode of the result and a substring test
    per form (faster than one alternation regex on short texts); only a result that holds a
    secret is walked and rebuilt.
    """

    __slots__ = ("_encoded", "_seen", "_text", "_usernames")

    def __init__(self, config: Config) -> None:
        users = {
            auth.username
            for integration in config.integrations.values()
            for auth in (integration.auth, *(t.auth for t in integration.tenants.values()))
            if isinstance(auth, BasicAuth)
        }
        self._usernames = tuple(sorted(users))
        self._seen: frozenset[str] | None = None
        self._text: re.Pattern[str] | None = None
        self._encoded: tuple[str, ...] = ()

    def _refresh(self, values: frozenset[str]) -> None:
        # Longest first: a form that contains another is replaced whole.
        forms = sorted(secret_forms(values, self._usernames), key=len, reverse=True)
        self._seen = values
        self._text = re.compile("|".join(re.escape(f) for f in forms)) if forms else None
        # As the encoded JSON spells them (quotes and backslashes escaped).
        self._encoded = tuple(_encode(f)[1:-1].decode() for f in forms)

    def clean(self, value: Any) -> Any:
        """`value` with every secret form replaced; the same object when it holds none."""
        values = known_secret_values()
        if values is not self._seen:
            self._refresh(values)
        forms = self._encoded
        if not forms or value is None:
            return value
        try:
            text = _encode(value).decode()
        except (TypeError, msgspec.EncodeError, UnicodeError):
            return self._walk(value)  # not plain JSON data: walk it
        for form in forms:
            if form in text:
                return self._walk(value)
        return value

    def _walk(self, value: Any) -> Any:
        text = self._text
        assert text is not None
        if isinstance(value, str):
            return text.sub(REDACTED, value)
        if isinstance(value, dict):
            return {self._walk(k): self._walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(v) for v in value]
        return value
