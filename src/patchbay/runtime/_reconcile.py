"""Writes whose outcome is unknown are confirmed in the background and recorded.

A write is in doubt when it may have reached the upstream and no definitive answer came back
(the retry policy marks it). The caller heard `pending`; here the write is confirmed: a send
still in flight (shielded past the budget) is awaited, then, if the answer still settles
nothing and the write has an idempotency key, it is resent with the same key, with backoff,
until the upstream answers definitively or `idempotency.reconcile_s` passes. The outcome is
recorded (`Outcomes.record`: `ToolRuntime.background_outcome` and a `background` event). A
write without a key is never resent: nobody can know what a second one would do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from patchbay._errors import Conflict, ErrorCode, ToolError
from patchbay.http._types import Request, Response, ResponseTooLarge, TransportError
from patchbay.policies._base import Exchange, Send
from patchbay.policies._classify import error_for_status, settles_answer, settles_write
from patchbay.runtime._logs import log_exception
from patchbay.runtime._outcomes import Kind, Outcomes, describe_response

log = logging.getLogger("patchbay.runtime")

_MAX_WAIT_S = 30.0  # between resends, however long reconciliation may go on
_MIN_WAIT_S = 0.05

# (outcome word, status, result) of a write, or None while it is still in doubt.
Found = tuple[str, int | None, Any] | None


class Reconciler:
    """Background confirmation of writes in doubt; one task per write."""

    def __init__(
        self,
        outcomes: Outcomes,
        sends: Callable[[Exchange], Send],
        scrub: Callable[[Any], Any],
    ) -> None:
        self._outcomes = outcomes
        self._sends = sends
        self._scrub = scrub
        self._tasks: set[asyncio.Future[None]] = set()
        # Writes being resent, by tool, tenant and key: asking again adds no second resender.
        self._resending: set[tuple[str, str | None, str]] = set()
        self._closing = asyncio.Event()
        self._random = random.Random()

    def adopt(self, task: asyncio.Future[Response], request: Request, exchange: Exchange) -> None:
        """Let a write sent before its caller gave up finish, and confirm it if in doubt."""
        self._spawn(self._confirm(task, request, exchange, "adopted"))

    def reconcile(self, request: Request, exchange: Exchange) -> None:
        """Confirm a write the retry policy left in doubt (`exchange.unsettled`)."""
        key = request.idempotency_key
        if key is not None:
            claim = (exchange.tool.name, exchange.call.tenant, key)
            if claim in self._resending:
                return  # already being confirmed: its record answers for this ask too
            self._resending.add(claim)
        self._spawn(self._confirm(None, request, exchange, "reconciled"))

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def busy(self) -> bool:
        """Whether any write is still being confirmed."""
        return bool(self._tasks)

    async def drain(self, timeout_s: float) -> None:
        """Wait for every confirmation to finish (resends included), up to `timeout_s`."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)

    async def close(self, timeout_s: float = 30.0) -> None:
        """Stop resending; let sends in flight end, then record what is left as unresolved."""
        self._closing.set()
        await self.drain(timeout_s)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def _confirm(
        self,
        task: asyncio.Future[Response] | None,
        request: Request,
        exchange: Exchange,
        kind: Kind,
    ) -> None:
        found: Found = None
        try:
            if task is not None:
                found = await self._settled(task, exchange)
            if found is None and request.idempotency_key is not None:
                found = await self._resend(request, exchange)
        except asyncio.CancelledError:
            pass  # the runtime closed first: recorded as unresolved below
        except Exception as exc:
            log_exception(log, exc, "confirming a write of %s failed", exchange.tool.name)
            found = (ErrorCode.INTERNAL.value, None, None)
        outcome, status, result = found if found is not None else ("unresolved", None, None)
        key = request.idempotency_key or f"unkeyed-{uuid.uuid4().hex[:12]}"
        self._resending.discard((exchange.tool.name, exchange.call.tenant, key))
        await self._outcomes.record(
            kind,
            tool=exchange.tool.name,
            call_id=exchange.call.id,
            key=key,
            outcome=outcome,
            integration=exchange.integration.name,
            tenant=exchange.call.tenant,
            status=status,
            result=result,
            extra={"method": request.method, "path": request.path_template},
        )

    async def _settled(self, task: asyncio.Future[Response], exchange: Exchange) -> Found:
        """How the shielded send ended, or None if it leaves the write in doubt."""
        try:
            response = await task
        except ToolError as exc:
            # In doubt only if an attempt may have arrived; else nothing was changed.
            return None if exchange.unsettled is not None else (exc.code.value, None, None)
        return self._answer(response, exchange)

    def _answer(self, response: Response, exchange: Exchange) -> Found:
        if not settles_answer(response):
            return None
        outcome, result = describe_response(response, exchange.tool)
        return outcome, response.status, self._scrub(result)

    async def _resend(self, request: Request, first: Exchange) -> Found:
        """Resend with the same key until a definitive answer, or None when time runs out."""
        tool = first.tool
        integration = first.integration
        spec = tool.idempotency
        span = spec.reconcile_s if spec is not None else 600.0
        end = time.monotonic() + span
        retry = tool.retry or integration.retry
        send = self._sends(first)
        tries = 0
        while True:
            tries += 1
            cap = min(_MAX_WAIT_S, max(retry.backoff_s, _MIN_WAIT_S) * 2 ** (tries - 1))
            wait = self._random.uniform(cap / 2, cap)
            if time.monotonic() + wait >= end:
                return None
            # The real clock, not the injected sleep: tests turn that off, and this may go on.
            # A wait that runs out is the normal case: time to resend.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=wait)
                return None  # the runtime is closing: stop resending
            exchange = Exchange(
                tool=tool,
                integration=integration,
                call=first.call,
                deadline=time.monotonic() + integration.timeout_s,
                emitter=first.emitter,
                version=first.version,
            )
            exchange.notes["reconciling"] = tries
            try:
                response = await send(request, exchange)
            except Conflict:
                return ErrorCode.CONFLICT.value, None, None
            except ResponseTooLarge as exc:
                status = exc.status_code
                if status is None or not settles_write(status):
                    continue
                # Answered for good, though too large to read: the status is the outcome.
                word = "ok" if status < 300 else error_for_status(status, "").code.value
                return word, status, None
            except (ToolError, TransportError, TimeoutError):
                continue  # breaker open, limiter, a reset again: nothing settled, try later
            found = self._answer(response, exchange)
            if found is not None:
                return found
