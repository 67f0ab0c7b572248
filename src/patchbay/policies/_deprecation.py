"""Deprecation and Sunset answers become a `deprecation` event once per endpoint per day."""

from __future__ import annotations

import time
from collections.abc import Callable

from patchbay.http._deprecation import read_deprecation
from patchbay.http._types import Request, Response
from patchbay.observe._events import Event
from patchbay.policies._base import Exchange

__all__ = ["DeprecationWatch"]

_MAX_SEEN = 4096  # endpoints reported today; endpoints are config templates, so few in practice


class DeprecationWatch:
    """Reads each answer's Deprecation and Sunset headers; reports an endpoint once a day.

    The endpoint is the integration with the method and path template (never the filled
    path); the day is the UTC day of `clock()` (the wall clock unless a test gives one). One
    per runtime: per process, a deprecated endpoint is one event a day, however busy.
    """

    __slots__ = ("_clock", "_day", "_seen")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._day = -1
        self._seen: set[tuple[str, str]] = set()

    def check(self, request: Request, response: Response, exchange: Exchange) -> None:
        """Emit a `deprecation` event if the answer carries a notice not yet reported today."""
        headers = response.headers
        # the transports keep names lower-case; only names in other cases need a look
        if (
            "deprecation" not in headers
            and "sunset" not in headers
            and not any(k.lower() in _NAMES for k in headers if not k.islower())
        ):
            return
        notice = read_deprecation(headers)
        if notice is None:
            return
        day = int(self._clock() // 86400)
        if day != self._day:
            self._day, self._seen = day, set()
        endpoint = f"{request.method} {request.path_template}"
        key = (request.integration, endpoint)
        if key in self._seen or len(self._seen) >= _MAX_SEEN:
            return
        self._seen.add(key)
        extra: dict[str, object] = {"endpoint": endpoint, "deprecated": notice.deprecated}
        for name, value in (("since", notice.since), ("sunset", notice.sunset)):
            if value is not None:
                extra[name] = value
        if notice.link is not None:
            extra["link"] = notice.link
        if exchange.version is not None:
            extra["version"] = exchange.version
        extra["words"] = notice.words()
        exchange.event(
            Event(
                kind="deprecation",
                tool=exchange.tool.name,
                call_id=exchange.call.id,
                integration=request.integration,
                tenant=exchange.call.tenant,
                method=request.method,
                path=request.path_template,
                status=response.status,
                extra=extra,
            )
        )


_NAMES = frozenset({"deprecation", "sunset"})
