"""The idempotency ledger: one write per key, whoever asks and however often."""

from __future__ import annotations

import asyncio
import os
from typing import cast

from patchbay._errors import Conflict, OutcomePending
from patchbay.http._types import Request, Response
from patchbay.policies._base import Exchange, Send
from patchbay.policies._classify import settles_answer
from patchbay.policies._prepare import Ahead, outcome, take
from patchbay.policies._shared import (
    SideTasks,
    decode_response,
    digest,
    emit,
    encode_response,
    request_fingerprint,
    scope,
)
from patchbay.state._batch import SetIfAbsent
from patchbay.state._protocol import StateStore

_PENDING = b"pending "
_DEFAULT_TTL_S = 86400.0


class IdempotencyPolicy:
    """The same write (tool, tenant, idempotency key) asked twice gets the first answer.

    The first asker claims `idem:{integration}:{tenant}:{tool}:{digest of key}` with an in-flight
    marker (set_if_absent, expiring after its budget plus `grace_s`, the time a sent write may
    finish in the background), sends, and stores the final answer (2xx and 4xx) for the tool's
    `idempotency.ttl_s`. A duplicate that finds the answer returns it without a request; one
    that finds the marker polls until the answer appears or its own budget ends, then hears
    `pending`. An answer that settles nothing (5xx, 401, 403, 408, 429, a 2xx that is not
    JSON), a network failure or a cancellation before sending releases the claim, so a retry
    or the reconciliation can go.
    Writes with the same key but another method, URL or body are refused as a conflict rather
    than answered with the first write's result. The ledger works across replicas through
    the store, so it holds even against an upstream that ignores idempotency keys.
    """

    __slots__ = ("_grace_s", "_poll_s", "_side", "_store")

    def __init__(self, store: StateStore, *, grace_s: float = 30.0, poll_s: float = 0.02) -> None:
        self._store = store
        self._grace_s = grace_s
        self._poll_s = poll_s
        self._side = SideTasks()

    async def __call__(self, request: Request, exchange: Exchange, next: Send) -> Response:
        if request.idempotency_key is None or not request.is_write:
            return await next(request, exchange)
        tool = exchange.tool
        ledger = self._ledger(request, exchange)
        fingerprint = request_fingerprint(request)
        ahead = take(exchange, ledger)
        if ahead is not None:
            marker = cast("SetIfAbsent", ahead.op).value  # the claim asked ahead, in `plan`
        else:
            marker = _PENDING + f"{fingerprint} {os.urandom(8).hex()}".encode()
        while True:
            if ahead is not None:
                claimed = bool(outcome(ahead))
                ahead = None
            else:
                ttl = max(exchange.remaining(), 0.0) + self._grace_s
                claimed = await self._store.set_if_absent(ledger, marker, ttl_s=ttl)
            if claimed:
                return await self._first(ledger, marker, fingerprint, request, exchange, next)
            raw = await self._store.get(ledger)
            if raw is None:
                continue  # released (or expired) between our claim and our read: claim again
            if raw.startswith(_PENDING):
                if raw[len(_PENDING) :].split(b" ", 1)[0].decode() != fingerprint:
                    raise self._conflict(exchange, request)
                # Polling on the real clock: the injected sleep may be a no-op in tests.
                if exchange.remaining() <= self._poll_s:
                    # The same write is in flight elsewhere: for this caller it is in doubt.
                    exchange.unsettled = request
                    raise OutcomePending(
                        "The same request is still being processed; do not send it again, "
                        "tell the caller it is in progress and will be confirmed.",
                        tool=tool.name,
                        call_id=exchange.call.id,
                    )
                try:
                    await asyncio.sleep(self._poll_s)
                except asyncio.CancelledError:
                    # The budget ended while the same write is in flight elsewhere: this
                    # caller hears `pending` too, not a timeout, and gets its confirmation.
                    exchange.unsettled = request
                    raise
                continue
            decoded = decode_response(raw)
            if decoded is None:
                await self._store.delete(ledger)  # not ours to read; let the write go
                continue
            response, head = decoded
            if head.get("f") != fingerprint:
                raise self._conflict(exchange, request)
            exchange.deduplicated = True
            emit(exchange, request, "deduplicated", policy="idempotency", status=response.status)
            return response

    def plan(self, request: Request, exchange: Exchange) -> tuple[list[Ahead], bool]:
        """The claim, asked ahead (released if an earlier step refuses before this one)."""
        if request.idempotency_key is None or not request.is_write:
            return [], True
        ledger = self._ledger(request, exchange)
        marker = _PENDING + f"{request_fingerprint(request)} {os.urandom(8).hex()}".encode()
        ttl = max(exchange.remaining(), 0.0) + self._grace_s

        async def undo(claimed: object) -> None:
            if claimed is True:
                await self._release(ledger, marker)

        return [Ahead(SetIfAbsent(ledger, marker, ttl), undo=undo)], True

    @staticmethod
    def _ledger(request: Request, exchange: Exchange) -> str:
        # Digested: a key template may hold arguments, and keys must not carry them.
        key = digest(request.idempotency_key)
        return f"idem:{scope(exchange)}:{exchange.tool.name}:{key}"

    async def _first(
        self,
        ledger: str,
        marker: bytes,
        fingerprint: str,
        request: Request,
        exchange: Exchange,
        next: Send,
    ) -> Response:
        try:
            response = await next(request, exchange)
        except asyncio.CancelledError:
            # Awaiting here would delay the caller's timeout; release on the side instead.
            self._side.spawn(self._release(ledger, marker), "idempotency release")
            raise
        except BaseException:
            await self._release(ledger, marker)
            raise
        if not settles_answer(response):
            await self._release(ledger, marker)
            return response
        spec = exchange.tool.idempotency
        ttl = spec.ttl_s if spec is not None else _DEFAULT_TTL_S
        await self._store.set(ledger, encode_response(response, f=fingerprint), ttl_s=ttl)
        return response

    async def _release(self, ledger: str, marker: bytes) -> None:
        # Only our own claim: after it expired, someone else's may stand there.
        if await self._store.get(ledger) == marker:
            await self._store.delete(ledger)

    @staticmethod
    def _conflict(exchange: Exchange, request: Request) -> Conflict:
        emit(exchange, request, "idempotency_conflict", policy="idempotency")
        return Conflict(
            f"{exchange.tool.name} was already asked with the same key but different details; "
            "do not change a request that was already sent: tell the caller what was done "
            "and ask before doing anything else.",
            tool=exchange.tool.name,
            call_id=exchange.call.id,
        )

    async def drain(self) -> None:
        """Finish releases still running on the side."""
        await self._side.drain()
