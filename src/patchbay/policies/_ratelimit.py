"""Client-side rate limit: wait for a slot when that fits the budget, else refuse at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import cast

from patchbay._errors import RateLimited
from patchbay.http._types import Request, Response
from patchbay.policies._base import Exchange, Send
from patchbay.policies._prepare import Ahead, outcome, take
from patchbay.policies._shared import emit, tenant_scope
from patchbay.state._batch import AcquireRate
from patchbay.state._protocol import StateStore

Sleep = Callable[[float], Awaitable[None]]


class RateLimitPolicy:
    """GCRA through the store (`acquire_rate`), so every replica draws from one allowance.

    The limit is the integration's `rate_limit`, one bucket for all tenants that share its
    upstream; a tenant whose override sets its own `base_url` or `rate_limit` gets its own
    bucket. It sits inside retry, so every attempt pays for its slot.
    """

    __slots__ = ("_margin_s", "_sleep", "_store")

    def __init__(
        self, store: StateStore, *, sleep: Sleep = asyncio.sleep, margin_s: float = 0.05
    ) -> None:
        self._store = store
        self._sleep = sleep
        # Waiting until the last millisecond of the budget would leave no time to send.
        self._margin_s = margin_s

    async def __call__(self, request: Request, exchange: Exchange, next: Send) -> Response:
        spec = exchange.integration.rate_limit
        if spec is None:
            return await next(request, exchange)
        key = f"rate:{tenant_scope(exchange)}"
        ahead = take(exchange, key)
        if ahead is not None:
            # Reserved ahead (first attempt only): the wait counts from the reservation.
            wait = cast("float | None", outcome(ahead))
            if wait is not None:
                wait = max(0.0, wait - (time.monotonic() - ahead.at))
        else:
            max_wait = max(0.0, exchange.remaining() - self._margin_s)
            wait = await self._store.acquire_rate(key, spec.per_second, spec.burst, max_wait)
        if wait is None:
            emit(exchange, request, "rate_limited", policy="rate_limit", per_second=spec.per_second)
            raise RateLimited(
                f"We are already sending {exchange.integration.name} as many requests as it "
                "accepts; wait a moment, then try once more, or tell the caller it is busy.",
                retry_after_s=round(1.0 / spec.per_second, 3),
                tool=exchange.tool.name,
                call_id=exchange.call.id,
            )
        if wait > 0:
            exchange.rate_wait_s += wait
            exchange.notes["rate_wait_s"] = round(exchange.rate_wait_s, 3)
            emit(exchange, request, "rate_wait", policy="rate_limit", wait_s=round(wait, 4))
            await self._sleep(wait)
        return await next(request, exchange)

    def plan(self, request: Request, exchange: Exchange) -> tuple[list[Ahead], bool]:
        """The first attempt's slot, reserved ahead."""
        spec = exchange.integration.rate_limit
        if spec is None:
            return [], True
        max_wait = max(0.0, exchange.remaining() - self._margin_s)
        op = AcquireRate(f"rate:{tenant_scope(exchange)}", spec.per_second, spec.burst, max_wait)
        return [Ahead(op)], True
