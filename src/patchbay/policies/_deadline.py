"""Writes outlive cancellation: once sent, they finish in the background and are recorded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from patchbay._errors import DeadlineExceeded
from patchbay.http._types import Request, Response
from patchbay.policies._base import Exchange, Send

Adopt = Callable[["asyncio.Future[Response]", Request, Exchange], None]


class DeadlinePolicy:
    """Refuse work past the budget; shield writes already sent from cancellation.

    The runtime bounds the whole tool call with the budget and cancels what runs past it; a
    read simply stops, but a write that has left for the upstream is handed to `adopt`, which
    lets it finish (and confirms it with the same idempotency key if it ends in doubt) so it
    never turns into an unrecorded side effect. The caller hears `pending`. A write whose
    attempts ended in doubt inside the budget is the runtime's to confirm (`unsettled`).
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
                # The background finish gets its own, longer deadline for any retries.
                exchange.deadline = time.monotonic() + self._grace_s
                exchange.notes["finishing_in_background"] = True
                self._adopt(task, request, exchange)
            elif not task.done():
                task.cancel()
            elif not task.cancelled():
                task.exception()  # retrieved: whoever needs it reads `exchange.unsettled`
            raise
