"""Reading an answer's deprecation signals: `Deprecation` (RFC 9745), `Sunset` (RFC 8594).

RFC 9745's `Deprecation` is a structured-field date, `@1688169599` (seconds since the epoch);
earlier drafts sent `true` or an HTTP-date, and APIs still do: all three are read. `Sunset` is
an HTTP-date. A `Link` with rel `deprecation` or `sunset` is kept when it is an http(s) URL.
Hand-written: three header forms of a few characters each, where a structured-field library
would be a dependency for one of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["DeprecationNotice", "read_deprecation"]

_SF_DATE = re.compile(r"@(-?\d{1,15})")
_LINK = re.compile(r'<(https?://[^>\s]{1,500})>\s*;[^,]*?\brel="?([^",;]+)"?', re.IGNORECASE)
_MAX_HEADER = 1024  # longer values are not a date anyone sends; they are ignored


@dataclass(frozen=True, slots=True)
class DeprecationNotice:
    """What an answer said about its endpoint's retirement (dates in ISO 8601, UTC)."""

    deprecated: bool  # a Deprecation header was read
    since: str | None = None  # when it is or was deprecated, if a date was given
    sunset: str | None = None  # when it stops answering
    link: str | None = None  # the API's page about it

    def words(self) -> str:
        """One line for people: deprecated since, sunset on, see link."""
        parts = []
        if self.deprecated:
            parts.append(f"deprecated since {self.since}" if self.since else "deprecated")
        if self.sunset:
            parts.append(f"{'' if self.deprecated else 'scheduled for '}sunset on {self.sunset}")
        if self.link:
            parts.append(f"see {self.link}")
        return ", ".join(parts)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _http_date(value: str) -> str | None:
    try:
        return _iso(parsedate_to_datetime(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _deprecation(value: str) -> tuple[bool, str | None]:
    text = value.strip()
    found = _SF_DATE.fullmatch(text)
    if found is not None:
        try:
            return True, _iso(datetime.fromtimestamp(int(found.group(1)), UTC))
        except (ValueError, OverflowError, OSError):
            return True, None
    if text.lower() in ("true", "?1"):
        return True, None
    if text.lower() in ("false", "?0"):
        return False, None
    when = _http_date(text)
    return when is not None, when


def read_deprecation(headers: Mapping[str, str]) -> DeprecationNotice | None:
    """The answer's deprecation notice, or None when it has none (the usual case).

    Header names are looked up lower-case, as the transports store them, with a fallback scan
    for headers given in any case (fakes, other transports).
    """
    dep = headers.get("deprecation")
    sunset = headers.get("sunset")
    if dep is None and sunset is None:
        if not any(k.lower() in ("deprecation", "sunset") for k in headers):
            return None
        low = {k.lower(): v for k, v in headers.items()}
        dep, sunset = low.get("deprecation"), low.get("sunset")
    deprecated, since = False, None
    if dep is not None and len(dep) <= _MAX_HEADER:
        deprecated, since = _deprecation(dep)
    when = _http_date(sunset) if sunset is not None and len(sunset) <= _MAX_HEADER else None
    if not deprecated and when is None:
        return None
    link = None
    raw = headers.get("link") or next((v for k, v in headers.items() if k.lower() == "link"), None)
    if raw and len(raw) <= 8 * _MAX_HEADER:
        for url, rel in _LINK.findall(raw):
            if {"deprecation", "sunset"} & set(rel.lower().split()):
                link = url.split("?", 1)[0].split("#", 1)[0]  # no query: it may carry tokens
                break
    return DeprecationNotice(deprecated, since, when, link)
