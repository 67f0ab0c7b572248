"""Quotas: requests per integration and tenant per day, and tool calls per phone call."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import cast

from patchbay._errors import QuotaExceeded
from patchbay.http._types import Request, Response
from patchbay.policies._base import Exchange, Send
from patchbay.policies._prepare import Ahead, Undo, outcome, take
from patchbay.policies._shared import emit, scope
from patchbay.spec._call import call_scoped
from patchbay.state._batch import Incr
from patchbay.state._protocol import StateStore

# A day counter outlives its day a little, so replicas whose clocks straddle midnight agree.
_DAY_TTL_S = 2 * 86400.0
# A phone call rarely lasts an hour; a day is generous and still lets the keys expire.
_CALL_TTL_S = 86400.0
# Notes (shown in meta) that also mark an exchange as counted: a handler's later requests
# belong to the same tool call and must not count again.
_TOOL_NOTE = "tool_calls_this_call"
_INTEGRATION_NOTE = "integration_calls_this_call"
_EXHAUSTED_KEPT = 1024
# key, TTL, kind, limit, note, words
_Check = tuple[str, float, str, int, str | None, str]


class QuotaPolicy:
    """Refuse, before any request, work beyond a per-day or per-call quota.

    Per day counts logical requests (retries are not counted again) on
    `quota:{integration}:{tenant}:day:{YYYY-MM-DD}` (UTC), from the integration's (or the
    tenant's) `quota.per_day`, and per tool from the tool's `quota.per_day`. Per call counts
    tool calls within one phone call (a tenant's: the same call id of another tenant counts
    apart): the tool's `quota.per_call` stops an LLM that loops on one tool, the integration's
    `quota.per_call` bounds all of its tools together.
    """

    __slots__ = ("_clock", "_day_number", "_day_text", "_exhausted", "_store")

    def __init__(self, store: StateStore, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._day_number = -1
        self._day_text = ""
        # Counters this replica saw past their limit (recent ones): see `plan`.
        self._exhausted: OrderedDict[str, None] = OrderedDict()

    async def __call__(self, request: Request, exchange: Exchange, next: Send) -> Response:
        for check in self._checks(exchange):
            await self._check(exchange, request, *check)
        return await next(request, exchange)

    def plan(self, request: Request, exchange: Exchange) -> tuple[list[Ahead], bool]:
        """The counts this exchange will take, asked ahead; given back if one refuses first."""
        checks = self._checks(exchange)
        ahead = [Ahead(Incr(c[0], 1, c[1]), undo=self._give_back(c[0])) for c in checks]
        # Past a quota found used up, reserving a rate-limit slot ahead would waste it.
        return ahead, not any(c[0] in self._exhausted for c in checks)

    def _give_back(self, key: str) -> Undo:
        async def undo(counted: object) -> None:
            await self._store.incr(key, -1)

        return undo

    def _checks(self, exchange: Exchange) -> list[_Check]:
        """The counters this exchange takes, in order: per call (tool, integration), per day."""
        tool, integration = exchange.tool, exchange.integration
        checks: list[_Check] = []
        base = f"quota:{scope(exchange)}"
        tool_limit = tool.quota.per_call if tool.quota else None
        call_limit = integration.quota.per_call if integration.quota else None
        per_call = tool_limit is not None or call_limit is not None
        # This tenant's call: another tenant's call of the same id counts apart.
        call = call_scoped("call", exchange.call.id, exchange.call.tenant) if per_call else ""
        if tool_limit is not None and _TOOL_NOTE not in exchange.notes:
            checks.append((
                f"{base}:tool:{tool.name}:{call}", _CALL_TTL_S,
                "per_call", tool_limit, _TOOL_NOTE,
                f"{tool.name} was already called {tool_limit} times in this call; stop "
                "calling it and tell the caller what happened.",
            ))  # fmt: skip
        if call_limit is not None and _INTEGRATION_NOTE not in exchange.notes:
            checks.append((
                f"{base}:{call}", _CALL_TTL_S,
                "per_call", call_limit, _INTEGRATION_NOTE,
                f"{integration.name} was already used {call_limit} times in this call; "
                "stop calling its tools and tell the caller what happened.",
            ))  # fmt: skip
        day_limit = integration.quota.per_day if integration.quota else None
        if day_limit is not None:
            checks.append((
                f"{base}:day:{self._day()}", _DAY_TTL_S,
                "per_day", day_limit, None,
                f"Today's limit of {day_limit} requests to {integration.name} is used "
                "up; tell the caller it cannot be done now and offer another way.",
            ))  # fmt: skip
        tool_day_limit = tool.quota.per_day if tool.quota else None
        if tool_day_limit is not None:
            checks.append((
                f"{base}:tool:{tool.name}:day:{self._day()}", _DAY_TTL_S,
                "per_day", tool_day_limit, None,
                f"{tool.name} reached its limit of {tool_day_limit} uses today; tell "
                "the caller it cannot be done now and offer another way.",
            ))  # fmt: skip
        return checks

    async def _check(
        self,
        exchange: Exchange,
        request: Request,
        key: str,
        ttl_s: float,
        kind: str,
        limit: int,
        note: str | None,
        words: str,
    ) -> None:
        """Count one use on `key`; refuse with `words` past `limit` (noting the count first)."""
        found = take(exchange, key)
        if found is not None:
            used = cast("int", outcome(found))
        else:
            used = await self._store.incr(key, 1, ttl_s=ttl_s)
        if note is not None:
            exchange.notes[note] = used
        if used > limit:
            self._exhausted[key] = None
            while len(self._exhausted) > _EXHAUSTED_KEPT:
                self._exhausted.popitem(last=False)
            emit(exchange, request, "quota_exceeded", policy="quota", quota=kind, limit=limit)
            raise QuotaExceeded(words, tool=exchange.tool.name, call_id=exchange.call.id)

    def _day(self) -> str:
        # Formatting a date costs more than the rest of the check: once per UTC day.
        number = int(self._clock() // 86400)
        if number != self._day_number:
            self._day_number = number
            self._day_text = datetime.fromtimestamp(number * 86400, UTC).strftime("%Y-%m-%d")
        return self._day_text
