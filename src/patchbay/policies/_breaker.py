"""Circuit breaker: stop calling an API that keeps failing, for every replica at once.

Shared state, under `brk:{integration}[:{tenant}][:{METHOD path}]` (the tenant only when it
has an upstream of its own, the endpoint only with `per_endpoint`):

- `{key}`: absent or `c GEN` (closed), or `o GEN UNTIL` (open until the wall-clock time
  UNTIL, half-open after it). Transitions are compare_and_set on this one value, so exactly
  one replica wins each and its event is the one emitted.
- `{key}:seq` (incr) and `{key}:w` (a hash of `window` slots): the count window. Each attempt
  takes the next sequence number; a failed or slow one also writes `KIND SEQ` in slot
  `seq % window`, reads the slots, and counts those whose SEQ is among the last `window`.
  Replicas fill one window without read-modify-write races, and a success costs one `incr`.
- `{key}:probe:GEN` and `{key}:ok:GEN` (incr): half-open probes claimed and probes passed.

Checking the breaker reads the store at most once per `refresh_s` (50 ms) per key and replica,
and not at all while the breaker is known to be open: a replica learns that another one opened
the breaker within `refresh_s` plus one store round trip (the staleness bound), and an open
breaker answers from process memory in microseconds. Replicas compare UNTIL with their own
clocks, so open periods are as exact as their clocks agree (NTP: milliseconds).
Successful attempts are recorded off the caller's path (on a store that batches, a success's
count goes with this replica's next batch, or alone as soon as the event loop turns); failures
are recorded before the failure is returned, so the next call already sees their effect.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from patchbay._errors import CircuitOpen
from patchbay.http._types import Request, Response, TransportError
from patchbay.policies._base import Exchange, Send
from patchbay.policies._classify import is_failure_status
from patchbay.policies._prepare import Ahead, Prepared, sent, take
from patchbay.policies._prepare import outcome as ahead_value
from patchbay.policies._shared import SideTasks, emit, tenant_scope
from patchbay.spec._model import BreakerSpec
from patchbay.state._batch import Get, Incr, Op, run_batch
from patchbay.state._protocol import StateStore

# Outcomes: success, failure, slow success, slow failure (only the last three are written).
_OK, _FAIL, _SLOW, _SLOW_FAIL = b"s", b"f", b"l", b"x"
_REPORT_EVERY_S = 1.0
# A closed copy found fresh when a request asked ahead stays good for its round trip: the
# staleness bound is refresh_s plus one round trip either way. Past this, it is read again.
_AHEAD_SLACK_S = 0.005


@dataclass(slots=True)
class _View:
    """This replica's copy of one breaker's shared state."""

    raw: bytes | None
    gen: int
    until: float | None  # None: closed; otherwise open until then (wall clock), then half-open
    read_at: float  # time.monotonic() of the read
    probes_taken_at: float = -math.inf  # when a probe claim last found every probe taken
    refused: int = 0  # calls refused since the last circuit_open event
    reported_at: float = -math.inf  # time.monotonic() of the last circuit_open event

    @classmethod
    def parse(cls, raw: bytes | None, read_at: float) -> _View:
        parts = raw.split() if raw else []
        try:
            if len(parts) == 3 and parts[0] == b"o":
                return cls(raw, int(parts[1]), float(parts[2]), read_at)
            if len(parts) == 2 and parts[0] == b"c":
                return cls(raw, int(parts[1]), None, read_at)
        except ValueError:
            pass  # an unreadable value is read as closed, like an absent one
        return cls(raw, 0, None, read_at)  # absent or unreadable: closed


class BreakerPolicy:
    """Fail fast with `circuit_open` while an integration (or endpoint) keeps failing.

    A failure is a 5xx, a network error or a timeout (including the budget running out
    mid-attempt); 4xx answers are the caller's problem, not the API's, and never count. A
    slow call is one slower than `slow_call_s` (time waiting for a rate-limit slot excluded).
    The breaker opens when the window holds at least `min_calls` outcomes and the failure
    rate reaches `failure_rate` (or the slow rate `slow_rate`); after `open_s` it lets
    `half_open_calls` probes through: all succeeding closes it, any failing reopens it.
    """

    __slots__ = (
        "_clock", "_flush_soon", "_held", "_inline", "_reading", "_refresh_s", "_side",
        "_store", "_views",
    )  # fmt: skip

    def __init__(
        self,
        store: StateStore,
        *,
        clock: Callable[[], float] = time.time,
        refresh_s: float = 0.05,
    ) -> None:
        self._store = store
        self._clock = clock
        self._refresh_s = refresh_s
        self._views: dict[str, _View] = {}
        self._side = SideTasks()
        # The memory store answers without I/O: recording inline is cheaper than a task.
        self._inline = store.backend == "memory"
        self._held: dict[str, int] = {}  # successes not yet counted in the store, by key
        self._reading: dict[str, asyncio.Future[bytes | None]] = {}  # reads in flight, by key
        self._flush_soon = False

    async def __call__(self, request: Request, exchange: Exchange, next: Send) -> Response:
        spec = exchange.integration.breaker
        if spec is None:
            return await next(request, exchange)
        key = self._key(request, exchange, spec)
        ahead = take(exchange, key)
        view = self._views.get(key) if ahead is None and exchange.prepared is not None else None
        if (
            view is None
            or view.until is not None
            or time.monotonic() - view.read_at >= self._refresh_s + _AHEAD_SLACK_S
        ):
            view = await self._current(key, ahead)
        probe = False
        if view.until is not None:
            probe = await self._admit_probe(key, view, spec, request, exchange)
        waited = exchange.rate_wait_s
        started = time.perf_counter()
        try:
            response = await next(request, exchange)
        except (TransportError, TimeoutError):
            await self._record(key, view, spec, _FAIL, probe, request, exchange)
            raise
        except asyncio.CancelledError:
            # The budget ending mid-attempt is a timeout; a caller hanging up says nothing.
            if exchange.remaining() <= 0:
                work = self._record(key, view, spec, _FAIL, probe, request, exchange)
                self._side.spawn(work, "breaker record")
            raise
        failed = is_failure_status(response.status)
        slow = spec.slow_call_s is not None and (
            time.perf_counter() - started - (exchange.rate_wait_s - waited) >= spec.slow_call_s
        )
        outcome = (_SLOW_FAIL if slow else _FAIL) if failed else (_SLOW if slow else _OK)
        if outcome == _OK and not probe:
            if exchange.prepared is not None and view.until is None:
                self._hold_success(key)  # a store that batches: see `_hold_success`
                return response
            work = self._record(key, view, spec, outcome, probe, request, exchange)
            if self._inline:
                await work
            else:
                self._side.spawn(work, "breaker record")
        else:
            await self._record(key, view, spec, outcome, probe, request, exchange)
        return response

    @staticmethod
    def _key(request: Request, exchange: Exchange, spec: BreakerSpec) -> str:
        key = f"brk:{tenant_scope(exchange)}"
        if spec.per_endpoint:
            key += f":{request.method} {request.path_template}"
        return key

    def _known(self, key: str, now: float) -> _View | None:
        """This replica's copy when it needs no read: fresh, or open for a while yet."""
        view = self._views.get(key)
        if view is not None and (
            now - view.read_at < self._refresh_s
            or (view.until is not None and self._clock() < view.until)
        ):
            return view
        return None

    def _hold_success(self, key: str) -> None:
        """Count a success with the next batch this replica sends (see `flush_soon`)."""
        self._held[key] = self._held.get(key, 0) + 1

    def flush_soon(self) -> None:
        """An exchange ended: successes still held go with the next request's batch, if one
        starts before the event loop turns, or else in a batch of their own on the side.

        So they reach the store as soon as a side task would have sent them, and under load
        they cost no round trip of their own.
        """
        if self._held and not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush_held)

    def _flush_held(self) -> None:
        self._flush_soon = False
        if self._held:
            ops: list[Op] = [a.op for a in self._take_held()]
            self._side.spawn(sent(run_batch(self._store, ops)), "breaker record")

    def _take_held(self) -> list[Ahead]:
        held, self._held = self._held, {}
        return [Ahead(Incr(f"{key}:seq", n), taken=False) for key, n in held.items()]

    def plan(self, request: Request, exchange: Exchange) -> tuple[list[Ahead], bool]:
        """The breaker's read, asked ahead when this replica's copy is due.

        The steps after it ask ahead only while the breaker is (as far as known) closed.
        """
        spec = exchange.integration.breaker
        if spec is None:
            return [], True
        key = self._key(request, exchange, spec)
        held = self._take_held() if self._held else []
        known = self._known(key, time.monotonic())
        if known is not None:
            return held, known.until is None
        view = self._views.get(key)
        return [*held, Ahead(Get(key))], view is None or view.until is None

    async def _current(self, key: str, ahead: Prepared | None = None) -> _View:
        now = time.monotonic()
        view = self._known(key, now)
        if view is not None:
            return view
        if ahead is not None:
            return self._adopt(key, cast("bytes | None", ahead_value(ahead)), now)
        # One read per key at a time: callers meanwhile wait for it instead of going on with
        # a copy older than the refresh bound (another replica may have opened the breaker).
        reading = self._reading.get(key)
        if reading is None:
            reading = self._reading[key] = asyncio.ensure_future(self._store.get(key))
            reading.add_done_callback(functools.partial(self._read_done, key))
        return self._adopt(key, await asyncio.shield(reading), now)

    def _read_done(self, key: str, reading: asyncio.Future[bytes | None]) -> None:
        if self._reading.get(key) is reading:
            del self._reading[key]
        if not reading.cancelled():
            reading.exception()  # retrieved here: every waiter may have gone

    def _adopt(self, key: str, raw: bytes | None, now: float) -> _View:
        """This replica's copy after a read: the same one refreshed, or the stored state."""
        view = self._views.get(key)
        if view is not None and raw == view.raw:
            view.read_at = now
            return view
        fresh = _View.parse(raw, now)
        self._views[key] = fresh
        return fresh

    async def _admit_probe(
        self, key: str, view: _View, spec: BreakerSpec, request: Request, exchange: Exchange
    ) -> bool:
        assert view.until is not None
        left = view.until - self._clock()
        if left > 0:
            raise self._refuse(view, exchange, request, spec, left, "open")
        if time.monotonic() - view.probes_taken_at < self._refresh_s:
            raise self._refuse(view, exchange, request, spec, 0.0, "half_open")
        taken = await self._store.incr(
            f"{key}:probe:{view.gen}", 1, ttl_s=self._probe_ttl(exchange)
        )
        if taken > spec.half_open_calls:
            view.probes_taken_at = time.monotonic()
            raise self._refuse(view, exchange, request, spec, 0.0, "half_open")
        if taken == 1:
            emit(exchange, request, "breaker_half_open", **_labels(spec, request, "half_open"))
        return True

    async def _record(
        self,
        key: str,
        view: _View,
        spec: BreakerSpec,
        outcome: bytes,
        probe: bool,
        request: Request,
        exchange: Exchange,
    ) -> None:
        bad = outcome != _OK
        if probe:
            if bad:
                await self._open(key, view, spec, request, exchange)
                return
            passed = await self._store.incr(
                f"{key}:ok:{view.gen}", 1, ttl_s=self._probe_ttl(exchange)
            )
            if passed >= spec.half_open_calls:
                await self._transition(key, view, b"c %d" % (view.gen + 1), request, exchange)
            return
        if view.until is not None:
            return  # admitted before the breaker opened: old news
        seq = await self._store.incr(f"{key}:seq", 1 + self._held.pop(key, 0))
        if not bad:
            return
        await self._store.hset(f"{key}:w", str(seq % spec.window), b"%s %d" % (outcome, seq))
        calls = min(seq, spec.window)
        if calls < spec.min_calls:
            return
        recent = []
        for value in (await self._store.hgetall(f"{key}:w")).values():
            kind, _, number = value.partition(b" ")
            if number.isdigit() and 0 <= seq - int(number) < spec.window:
                recent.append(kind)
        failures = sum(1 for kind in recent if kind in (_FAIL, _SLOW_FAIL))
        slows = sum(1 for kind in recent if kind in (_SLOW, _SLOW_FAIL))
        if failures / calls >= spec.failure_rate or (
            spec.slow_call_s is not None and slows / calls >= spec.slow_rate
        ):
            await self._open(key, view, spec, request, exchange)

    async def _open(
        self, key: str, view: _View, spec: BreakerSpec, request: Request, exchange: Exchange
    ) -> None:
        until = self._clock() + spec.open_s
        opened = await self._transition(
            key, view, b"o %d %.3f" % (view.gen + 1, until), request, exchange
        )
        if not opened and view.until is None:
            # Our copy was behind; if the shared state is still closed, open it from there.
            fresh = self._views[key]
            if fresh.until is None:
                raw = b"o %d %.3f" % (fresh.gen + 1, until)
                await self._transition(key, fresh, raw, request, exchange)

    async def _transition(
        self, key: str, view: _View, raw: bytes, request: Request, exchange: Exchange
    ) -> bool:
        now = time.monotonic()
        if not await self._store.compare_and_set(key, view.raw, raw):
            self._views[key] = _View.parse(await self._store.get(key), now)
            return False
        fresh = self._views[key] = _View.parse(raw, now)
        spec = exchange.integration.breaker
        assert spec is not None
        if fresh.until is None:
            # A closed breaker starts from an empty window: old failures are history.
            await self._store.delete(f"{key}:w")
            await self._store.delete(f"{key}:seq")
            emit(exchange, request, "breaker_closed", **_labels(spec, request, "closed"))
        else:
            emit(
                exchange,
                request,
                "breaker_opened",
                open_s=spec.open_s,
                **_labels(spec, request, "open"),
            )
        return True

    def _refuse(
        self,
        view: _View,
        exchange: Exchange,
        request: Request,
        spec: BreakerSpec,
        left: float,
        state: str,
    ) -> CircuitOpen:
        # One event per second per breaker, counting the refusals: an outage must not multiply
        # the event volume (each tool_call event already says circuit_open).
        view.refused += 1
        now = time.monotonic()
        if now - view.reported_at >= _REPORT_EVERY_S:
            labels = _labels(spec, request, state)
            emit(exchange, request, "circuit_open", refused=view.refused, **labels)
            view.refused, view.reported_at = 0, now
        name = exchange.integration.name
        when = f"for about {math.ceil(left)} more seconds" if left >= 1 else "for a moment"
        return CircuitOpen(
            f"{name} has been failing, so calls to it are paused {when}. Do not retry now; "
            "tell the caller it is unavailable and offer to follow up later.",
            tool=exchange.tool.name,
            call_id=exchange.call.id,
        )

    @staticmethod
    def _probe_ttl(exchange: Exchange) -> float:
        # A probe whose outcome never arrives (its caller gone) frees its slot after this.
        return max(exchange.integration.timeout_s, exchange.tool.budget_s) + 1.0

    async def drain(self) -> None:
        """Finish recordings still running on the side."""
        self._flush_held()
        await self._side.drain()


def _labels(spec: BreakerSpec, request: Request, state: str) -> dict[str, object]:
    endpoint = f"{request.method} {request.path_template}" if spec.per_endpoint else "*"
    return {
        "policy": "breaker",
        "state": state,
        "endpoint": endpoint,
        "path": request.path_template if spec.per_endpoint else None,
    }
