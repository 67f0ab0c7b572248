"""Read cache for GET tools: fresh answers without a request, stale ones when the API fails."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from patchbay._errors import CircuitOpen, DeadlineExceeded, RateLimited, UpstreamUnavailable
from patchbay.http._types import Request, Response, TransportError
from patchbay.policies._base import Exchange, Send
from patchbay.policies._shared import decode_response, digest, emit, encode_response, scope
from patchbay.state._protocol import StateError, StateStore

log = logging.getLogger("patchbay.policies")

# What the live path raises when the API is down, slow or shut off: a stale answer beats these.
_LIVE_FAILURES = (
    UpstreamUnavailable,
    DeadlineExceeded,
    CircuitOpen,
    RateLimited,
    TransportError,
    TimeoutError,
)


class CachePolicy:
    """Serve a tool's GETs from the store for `cache.ttl_s`; keep them `stale_if_error_s` longer.

    The key is the tool, integration, tenant, method and URL with sorted query (the URL already
    holds the arguments), digested so that no argument appears in a key; the tenant is in the
    key, so tenants never read each other's entries. Only 2xx answers are stored. Entries carry
    the wall-clock time they were stored, which every replica reads the same way.
    """

    __slots__ = ("_clock", "_margin_s", "_store")

    def __init__(
        self,
        store: StateStore,
        *,
        clock: Callable[[], float] = time.time,
        margin_s: float = 0.02,
    ) -> None:
        self._store = store
        self._clock = clock
        # With a stale answer in hand, the live try stops this long before the budget does.
        self._margin_s = margin_s

    async def __call__(self, request: Request, exchange: Exchange, next: Send) -> Response:
        spec = exchange.tool.cache
        if spec is None or request.method != "GET":
            return await next(request, exchange)
        tenant = exchange.call.tenant or "-"
        key = (
            f"cache:{scope(exchange)}:{exchange.tool.name}:"
            f"{digest(tenant, request.method, request.url, sorted(request.query))}"
        )
        stale: Response | None = None
        stale_age = 0.0
        found = await self._read(key)
        if found is not None:
            response, stored_at = found
            age = max(0.0, self._clock() - stored_at)
            if age < spec.ttl_s:
                exchange.cached = True
                exchange.notes["cache_age_s"] = round(age, 3)
                emit(exchange, request, "cache_hit", policy="cache", age_s=round(age, 3))
                return response
            if age < spec.ttl_s + spec.stale_if_error_s:
                stale, stale_age = response, age
        try:
            if stale is None:
                response = await next(request, exchange)
            else:
                async with asyncio.timeout(max(0.0, exchange.remaining() - self._margin_s)):
                    response = await next(request, exchange)
        except _LIVE_FAILURES as exc:
            if stale is None:
                raise
            return self._serve_stale(stale, stale_age, exchange, request, type(exc).__name__)
        if 200 <= response.status < 300:
            entry = encode_response(response, t=self._clock())
            await self._write(key, entry, spec.ttl_s + spec.stale_if_error_s)
        elif stale is not None and (response.status >= 500 or response.status == 429):
            return self._serve_stale(stale, stale_age, exchange, request, f"http_{response.status}")
        return response

    @staticmethod
    def _serve_stale(
        response: Response, age: float, exchange: Exchange, request: Request, reason: str
    ) -> Response:
        exchange.cached = True
        exchange.stale = True
        exchange.notes["cache_age_s"] = round(age, 3)
        emit(exchange, request, "stale", policy="cache", age_s=round(age, 3), reason=reason)
        return response

    async def _read(self, key: str) -> tuple[Response, float] | None:
        # A cache only saves time: a store that fails must not fail the call.
        try:
            raw = await self._store.get(key)
        except StateError as exc:
            log.warning("cache read failed, going to the API: %s", exc)
            return None
        decoded = decode_response(raw) if raw is not None else None
        if decoded is None:
            return None
        response, head = decoded
        stored_at = head.get("t")
        if not isinstance(stored_at, int | float):
            return None
        return response, float(stored_at)

    async def _write(self, key: str, entry: bytes, ttl_s: float) -> None:
        try:
            await self._store.set(key, entry, ttl_s=ttl_s)
        except StateError as exc:
            log.warning("cache write failed: %s", exc)
