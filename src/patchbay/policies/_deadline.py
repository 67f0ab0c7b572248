"""Writes outlive cancellation: once sent, they finish in the background and are recorded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from patchbay._errors import DeadlineExceeded
from patchbay.http._types import Request, Response
from patchbay.policies._base import Exchange, Send
from patchbay.policies._classify import may_resend

Adopt = Callable[["asyncio.Future[Response]", Request, Exchange], None]


class DeadlinePolicy:
    """Refuse work past the budget; shield writes already sent from cancellation.

    The runtime bounds the whole tool call with the budget and cancels what runs past it; a
    read simply stops, but a write that has left for the upstream is handed to `adopt`, which
    lets it finish (with the same idempotency key) so it never turns into an unrecorded
    side effect. The same holds when the budget ends inside the pipeline (the last attempt
    timed out): the write's fate is unknown, so it is sent again in the background with the
    same key, which the upstream and the idempotency ledger answer at most once.
    """

    __slots__ = ("_adopt", "_grace_s")

    def __init__(self, adopt: Adopt, grace_s: float = 30.0) -> None:
        self._adopt = adopt
        self._grace_s = grace_s

    async def __call__(self, request: Request, exchange: Exchange, next: Send) -> Response:
        if exchange.remaining() <= 0:
            raise DeadlineExceeded("The answer took too long.")
        if not request.is_write:
            return await next(request, exchange)
        task = asyncio.ensure_future(next(request, exchange))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if exchange.sent and not task.done():
                self._hand_over(task, request, exchange)
            elif exchange.sent and _timed_out(task):
                self._finish_later(request, exchange, next)
            else:
                task.cancel()
            raise
        except DeadlineExceeded:
            if exchange.sent:
                self._finish_later(request, exchange, next)
            raise

    def _hand_over(
        self, task: asyncio.Future[Response], request: Request, exchange: Exchange
    ) -> None:
        # The background finish gets its own, longer deadline for any retries.
        exchange.deadline = time.monotonic() + self._grace_s
        exchange.notes["finishing_in_background"] = True
        self._adopt(task, request, exchange)

    def _finish_later(self, request: Request, exchange: Exchange, next: Send) -> None:
        if may_resend(request.method, request.idempotency_key):
            # The task starts once this returns, after _hand_over has extended the deadline.
            self._hand_over(asyncio.ensure_future(next(request, exchange)), request, exchange)
            return
        # No key: sending again could repeat the side effect, so record it as unresolved.
        unresolved: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        unresolved.set_exception(DeadlineExceeded("The write's outcome is unknown."))
        exchange.notes["unresolved"] = True
        self._adopt(unresolved, request, exchange)


def _timed_out(task: asyncio.Future[Response]) -> bool:
    return not task.cancelled() and isinstance(task.exception(), DeadlineExceeded)
