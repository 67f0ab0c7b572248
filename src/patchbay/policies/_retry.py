"""Retries with exponential backoff and full jitter, bounded by the tool's budget.

The retry policy sees every attempt of a request, so it is also where a write is found to be
in doubt: one attempt may have reached the upstream (a reset or timeout after connecting, a
5xx) and no definitive answer came after it. It marks `exchange.unsettled`; the runtime reports
such a write as `pending` and confirms it in the background rather than calling it failed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from patchbay._errors import DeadlineExceeded, RateLimited, UpstreamUnavailable
from patchbay.http._types import Request, Response, TransportError
from patchbay.policies._base import Exchange, Send
from patchbay.policies._classify import (
    is_retryable_status,
    may_have_arrived,
    may_resend,
    parse_retry_after,
    settles_answer,
)
from patchbay.policies._shared import emit
from patchbay.spec._model import RetrySpec

Sleep = Callable[[float], Awaitable[None]]


class RetryPolicy:
    """Resend on network errors, timeouts, 408 and 5xx; wait out 429s that fit the budget."""

    __slots__ = ("_random", "_sleep")

    def __init__(self, sleep: Sleep = asyncio.sleep, rng: random.Random | None = None) -> None:
        self._sleep = sleep
        self._random = rng or random.Random()

    def backoff(self, spec: RetrySpec, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2^(attempt-1))]."""
        cap = min(spec.max_backoff_s, spec.backoff_s * (2 ** (attempt - 1)))
        return self._random.uniform(0.0, cap)

    async def __call__(self, request: Request, exchange: Exchange, next: Send) -> Response:
        spec = exchange.tool.retry or exchange.integration.retry
        resend_ok = not request.is_write or may_resend(request.method, request.idempotency_key)
        # Whether an attempt of this write may have reached the upstream with no definitive
        # answer since: then no failure of a later attempt can say that nothing changed.
        doubt = False
        attempt = 0
        try:
            while True:
                attempt += 1
                last = attempt >= spec.attempts
                timed_out = False
                exchange.attempt = attempt
                try:
                    response = await next(request, exchange)
                except (TransportError, TimeoutError) as exc:
                    if request.is_write and may_have_arrived(exc):
                        doubt = True
                    timed_out = isinstance(exc, TimeoutError)
                    if timed_out and (last or not resend_ok or exchange.remaining() <= 0.001):
                        raise DeadlineExceeded("The system took too long to answer.") from exc
                    if last or not resend_ok:
                        raise UpstreamUnavailable(
                            "The system is not answering.", retryable=True
                        ) from exc
                    wait = self.backoff(spec, attempt)
                else:
                    status = response.status
                    if status == 429:
                        ra = parse_retry_after(response.header("Retry-After"))
                        wait = ra if ra is not None else self.backoff(spec, attempt)
                        if last or wait >= exchange.remaining():
                            raise RateLimited(
                                "The system asked us to slow down.",
                                retry_after_s=ra,
                                status_code=429,
                            )
                    elif is_retryable_status(status) and not last and resend_ok:
                        if request.is_write and status >= 500:
                            doubt = True
                        wait = self.backoff(spec, attempt)
                    else:
                        if request.is_write:
                            self._settle(request, exchange, doubt, response)
                        return response
                if wait >= exchange.remaining():
                    # No point sleeping past the budget: the deadline would cut the next try.
                    if timed_out:
                        raise DeadlineExceeded("The system took too long to answer.")
                    raise UpstreamUnavailable(
                        "The system is not answering in time.", retryable=True
                    )
                emit(exchange, request, "retry", wait_s=round(wait, 3))
                await self._sleep(wait)
        except BaseException as exc:
            # Whatever ends the retrying (budget, breaker, limiter, cancellation) leaves a write
            # that may have arrived in doubt.
            if doubt or (request.is_write and may_have_arrived(exc)):
                exchange.unsettled = request
            raise

    @staticmethod
    def _settle(request: Request, exchange: Exchange, doubt: bool, response: Response) -> None:
        if settles_answer(response):
            if exchange.unsettled is request:
                exchange.unsettled = None
        elif doubt or response.status < 400 or response.status >= 500:
            exchange.unsettled = request  # a 5xx, or a 2xx that proves nothing
