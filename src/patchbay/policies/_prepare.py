"""One store round trip before a request: what the policies will ask the store, asked ahead.

On a store that batches (Redis), the policies of a pipeline each say what they will ask the
store for on the way in (quota counts, the idempotency claim, a cache or breaker read, the
rate-limit reservation), and `PreparePolicy`, outermost, sends all of it as one batch. Each
policy then takes its own result where it would have asked, in the pipeline's order, with
the same checks; nothing is decided ahead. What no policy took (an earlier one refused) is
taken back where it can be: quota counts are given back, an idempotency claim released. A
rate-limit slot reserved ahead for a request that an earlier policy then refused stays
spent: planners stop asking ahead past a step that is likely to refuse (an open breaker, a
quota found used up, a cached read), so that only happens when the refusal was news.
Retries ask the store themselves: a reservation made ahead serves the first attempt only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from patchbay.http._types import Request, Response
from patchbay.policies._base import Exchange, Send
from patchbay.policies._shared import SideTasks
from patchbay.state._batch import Op, Outcome, run_batch
from patchbay.state._protocol import StateError, StateStore

log = logging.getLogger("patchbay.policies")

Undo = Callable[[Outcome], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Ahead:
    """One operation a policy asks for ahead of its turn."""

    op: Op
    undo: Undo | None = None  # takes the op back (given its outcome) when no policy took it
    taken: bool = True  # False: a write riding along whose result nobody reads


@dataclass(slots=True)
class Prepared:
    """The outcome of an operation asked ahead, and when it came back."""

    op: Op
    outcome: Outcome
    at: float  # time.monotonic() of the batch's answer
    undo: Undo | None = None


class Planner(Protocol):
    """A policy that can say ahead what it will ask the store for."""

    def plan(self, request: Request, exchange: Exchange) -> tuple[Sequence[Ahead], bool]:
        """Its operations, and whether the policies after it should ask ahead too."""
        ...


def take(exchange: Exchange, key: str) -> Prepared | None:
    """The result asked ahead for `key`, once; None when there is none."""
    prepared = exchange.prepared
    if not prepared:
        return None
    return prepared.pop(key, None)


def outcome(found: Prepared) -> object:
    """The value of an operation asked ahead; raises the error it met, where it is taken."""
    if isinstance(found.outcome, BaseException):
        raise found.outcome
    return found.outcome


class PreparePolicy:
    """Outermost step on a batching store: one round trip for what the policies will ask."""

    __slots__ = ("_ended", "_planners", "_side", "_store")

    def __init__(
        self,
        store: StateStore,
        planners: Sequence[Planner],
        side: SideTasks,
        ended: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._planners = tuple(planners)
        self._side = side
        self._ended = ended  # told when an exchange asked ahead has ended

    async def __call__(self, request: Request, exchange: Exchange, next: Send) -> Response:
        # A handler may send several requests at once through one exchange: those ask alone.
        if exchange.tool.handler is not None or exchange.prepared is not None:
            return await next(request, exchange)
        if exchange.remaining() <= 0:
            return await next(request, exchange)  # refused by the deadline, nothing asked
        ahead: list[Ahead] = []
        for planner in self._planners:
            more, go_on = planner.plan(request, exchange)
            ahead.extend(more)
            if not go_on:
                break
        if not ahead:
            return await next(request, exchange)
        try:
            outcomes = await run_batch(self._store, [a.op for a in ahead])
        except StateError:
            # Unreachable: each policy asks on its own as it would without a batch, and meets
            # the store's failure (or the fallback store's local state) where it always did.
            return await next(request, exchange)
        at = time.monotonic()
        exchange.prepared = {
            a.op.key: Prepared(a.op, result, at, a.undo)
            for a, result in zip(ahead, outcomes, strict=True)
            if a.taken
        }
        cancelled = False
        try:
            return await next(request, exchange)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            left, exchange.prepared = exchange.prepared, None
            if self._ended is not None:
                self._ended()
            undo = [p for p in (left or {}).values() if p.undo is not None]
            if undo:
                work = _undo(undo)
                if cancelled:
                    self._side.spawn(work, "giving back what was asked ahead")
                else:
                    await work


async def sent(work: Awaitable[list[Outcome]]) -> None:
    """Await a batch of writes whose results nobody reads; raise the first error it met."""
    for found in await work:
        if isinstance(found, BaseException):
            raise found


async def _undo(left: list[Prepared]) -> None:
    for found in left:
        if found.undo is None or isinstance(found.outcome, BaseException):
            continue
        try:
            await found.undo(found.outcome)
        except (StateError, UnicodeError) as exc:
            # Never in place of the call's own answer; a count given back late only tightens.
            log.warning("could not give back %s asked ahead: %s", type(found.op).__name__, exc)
