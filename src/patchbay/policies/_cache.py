"""Read cache for GET tools: fresh answers without a request, stale ones when the API fails."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import cast

from patchbay._errors import CircuitOpen, DeadlineExceeded, RateLimited, UpstreamUnavailable
from patchbay.http._types import Request, Response, TransportError
from patchbay.policies._base import Exchange, Send
from patchbay.policies._prepare import Ahead, Prepared, outcome, take
from patchbay.policies._shared import (
    decode_response,
    digest,
    emit,
    encode_response,
    scope,
    state_tenant,
)
from patchbay.state._batch import Get
from patchbay.state._protocol import StateError, StateStore

log = logging.getLogger("patchbay.policies")

_LOCAL_MAX_BODY = 64 * 1024
# integration, tenant, tool, URL, query pairs.
_LocalKey = tuple[str, str, str, str, tuple[tuple[str, str], ...]]

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
    the wall-clock time they were stored, which every replica reads the same way; each replica
    also keeps the entries it has seen fresh in process memory until they stop being fresh.
    """

    __slots__ = ("_clock", "_local", "_local_entries", "_margin_s", "_store")

    def __init__(
        self,
        store: StateStore,
        *,
        clock: Callable[[], float] = time.time,
        margin_s: float = 0.02,
        local_entries: int = 4096,
    ) -> None:
        self._store = store
        self._clock = clock
        # With a stale answer in hand, the live try stops this long before the budget does.
        self._margin_s = margin_s
        # Fresh entries decoded in this process, so a hit costs neither a store round trip nor
        # decoding. Safe to keep per replica: an entry never changes while it is fresh. An
        # OrderedDict is all the LRU needs (cachetools' TTLCache has one TTL per cache).
        self._local: OrderedDict[_LocalKey, tuple[Response, float, float]] = OrderedDict()
        self._local_entries = local_entries

    async def __call__(self, request: Request, exchange: Exchange, next: Send) -> Response:
        spec = exchange.tool.cache
        if spec is None or request.method != "GET":
            return await next(request, exchange)
        tenant = state_tenant(exchange) or "-"
        local_key = (
            exchange.integration.name,
            tenant,
            exchange.tool.name,
            request.url,
            request.query,
        )
        now = self._clock()
        hit = self._local.get(local_key)
        if hit is not None:
            response, stored_at, fresh_until = hit
            if now < fresh_until:
                return self._serve_fresh(response, now - stored_at, exchange, request)
            del self._local[local_key]
        key = self._key(request, exchange, tenant)
        stale: Response | None = None
        stale_age = 0.0
        found = await self._read(key, take(exchange, key))
        if found is not None:
            response, stored_at = found
            age = max(0.0, now - stored_at)
            if age < spec.ttl_s:
                self._remember(local_key, response, stored_at, spec.ttl_s)
                return self._serve_fresh(response, age, exchange, request)
            if age < spec.ttl_s + spec.stale_if_error_s:
                stale, stale_age = response, age
        budget_end = exchange.deadline
        if stale is not None:
            # A shorter deadline, not a cancellation: the attempt times out as attempts do (the
            # breaker counts it) and leaves time to answer from the stale entry.
            exchange.deadline = budget_end - self._margin_s
        try:
            response = await next(request, exchange)
        except _LIVE_FAILURES as exc:
            if stale is None:
                raise
            return self._serve_stale(stale, stale_age, exchange, request, type(exc).__name__)
        finally:
            exchange.deadline = budget_end
        if 200 <= response.status < 300:
            stored_at = self._clock()
            entry = encode_response(response, t=stored_at)
            await self._write(key, entry, spec.ttl_s + spec.stale_if_error_s)
            self._remember(local_key, response, stored_at, spec.ttl_s)
        elif stale is not None and (response.status >= 500 or response.status == 429):
            return self._serve_stale(stale, stale_age, exchange, request, f"http_{response.status}")
        return response

    def plan(self, request: Request, exchange: Exchange) -> tuple[list[Ahead], bool]:
        """The entry's read, asked ahead when this replica holds no fresh copy.

        The steps after the cache do not ask ahead: a hit would leave their work unused.
        """
        spec = exchange.tool.cache
        if spec is None or request.method != "GET":
            return [], True
        tenant = state_tenant(exchange) or "-"
        local_key = (exchange.integration.name, tenant, exchange.tool.name, request.url)
        hit = self._local.get((*local_key, request.query))  # the key `__call__` reads
        if hit is not None and self._clock() < hit[2]:
            return [], False
        return [Ahead(Get(self._key(request, exchange, tenant)))], False

    @staticmethod
    def _key(request: Request, exchange: Exchange, tenant: str) -> str:
        return (
            f"cache:{scope(exchange)}:{exchange.tool.name}:"
            f"{digest(tenant, request.method, request.url, sorted(request.query))}"
        )

    def _remember(self, key: _LocalKey, response: Response, stored_at: float, ttl_s: float) -> None:
        if len(response.body) > _LOCAL_MAX_BODY:
            return  # large answers are read from the store, not held in every replica
        self._local[key] = (response, stored_at, stored_at + ttl_s)
        self._local.move_to_end(key)
        while len(self._local) > self._local_entries:
            self._local.popitem(last=False)

    @staticmethod
    def _serve_fresh(
        response: Response, age: float, exchange: Exchange, request: Request
    ) -> Response:
        exchange.cached = True
        exchange.notes["cache_age_s"] = round(max(age, 0.0), 3)
        emit(exchange, request, "cache_hit", policy="cache")
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

    async def _read(self, key: str, ahead: Prepared | None) -> tuple[Response, float] | None:
        # A cache only saves time: a store that fails must not fail the call.
        try:
            if ahead is not None:
                raw = cast("bytes | None", outcome(ahead))
            else:
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
