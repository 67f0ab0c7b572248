"""Anomaly guards: a tool's calls per tenant against static limits and a moving baseline."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Collection

from patchbay._errors import QuotaExceeded
from patchbay.observe._events import Emitter, Event
from patchbay.spec._call import CallContext, call_scoped
from patchbay.spec._model import Guard, GuardBaseline, Integration, Tool
from patchbay.state._protocol import StateStore

# A phone call rarely lasts an hour; a day is generous and still lets the keys expire.
_CALL_TTL_S = 86400.0
# A minute's count is read back when the baseline next catches up, which may be after a
# quiet spell; past an hour its weight in the average has mostly decayed anyway.
_MINUTE_TTL_S = 3600.0
# A baseline nobody updated for a week starts again from nothing.
_BASELINE_TTL_S = 7 * 86400.0
# What the caller can still be offered when a guard stops a tool.
_OFFER = "offer to transfer them to a person or to arrange a callback"


class GuardPolicy:
    """Counts the calls of tools that have a `guard`, before anything is sent.

    Keys, per tool and tenant (`guard:{tool}` or `guard@{tenant}:{tool}`, a tenant counted
    only when the integration lists it, so made-up names share one count):

    - `...:call:{id}` (the call's tenant and id, as quotas key it): calls in one phone call;
      past `max_per_call` an anomaly, and with `action: block` the rest of that call is
      refused. Only that call: one caller who talks the agent into a loop must not switch
      the tool off for every other caller of the tenant.
    - `...:m:{minute}`: calls in one UTC minute of the injected clock; past `max_per_minute`
      an anomaly, and with `action: block` the tool is refused for the tenant for
      `cool_off_s` (`...:blocked` holds when it ends, on the guard's clock).
    - `...:base`: the moving baseline, `{"m": last minute folded in, "r": calls per minute,
      "s": first minute}`, folded once per minute by whichever replica counts that minute's
      first call. A minute past `factor` x r and `min_per_minute` is an anomaly once the
      baseline is `warmup_min` minutes old. Baseline anomalies only alert: a surge against
      a learned rate is for a person to judge, and may well be real business.

    One `anomaly` event per excess (the call that crosses the limit), not one per call after.
    Refusals are `quota_exceeded`, not retryable, and never send a request.
    """

    __slots__ = ("_clock", "_emitter", "_rates", "_store", "_tenants")

    def __init__(
        self,
        store: StateStore,
        emitter: Emitter,
        *,
        tenants: Collection[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._emitter = emitter
        self._tenants = frozenset(tenants)  # for tools without an integration
        self._clock = clock
        # Per baseline key: (minute, calls per minute, first minute), read once per minute.
        self._rates: dict[str, tuple[int, float, int]] = {}

    async def check(self, tool: Tool, call: CallContext, integration: Integration | None) -> None:
        """Count one call of `tool`; raise QuotaExceeded if its guard blocks it."""
        guard = tool.guard
        if guard is None:
            return
        base = call_scoped("guard", tool.name, self._tenant(call.tenant, integration))
        block = guard.action == "block"
        now = self._clock()
        if block:
            until = _number(await self._store.get(f"{base}:blocked"))
            if until is not None and until > now:
                raise _paused(tool, call, until - now)
        limit = guard.max_per_call
        if limit is not None:
            used = await self._store.incr(
                f"{base}:{call_scoped('call', call.id, call.tenant)}", 1, ttl_s=_CALL_TTL_S
            )
            if used > limit:
                if used == limit + 1:
                    self._anomaly(tool, call, integration, guard, "per_call", limit, used)
                if block:
                    raise QuotaExceeded(
                        f"{tool.name} was already called {limit} times in this call, the most "
                        "allowed, so nothing was sent. Do not call it again in this call: tell "
                        f"the caller it cannot be done right now and {_OFFER}.",
                        tool=tool.name,
                        call_id=call.id,
                    )
        if guard.max_per_minute is None and guard.baseline is None:
            return
        minute = int(now // 60)
        count = await self._store.incr(f"{base}:m:{minute}", 1, ttl_s=_MINUTE_TTL_S)
        if guard.baseline is not None:
            await self._against_baseline(tool, call, integration, guard, base, minute, count)
        limit = guard.max_per_minute
        if limit is None or count <= limit:
            return
        if count == limit + 1:
            self._anomaly(tool, call, integration, guard, "per_minute", limit, count)
        if block:
            # The first excess starts the cool-off; refusals during it do not prolong it. The
            # end is kept on the guard's clock (the key's TTL only tidies up).
            raw = await self._store.get(f"{base}:blocked")
            until = _number(raw)
            if until is None or until <= now:
                until = now + guard.cool_off_s
                await self._store.compare_and_set(
                    f"{base}:blocked", raw, repr(until).encode(), ttl_s=guard.cool_off_s + 60
                )
            raise _paused(tool, call, until - now)

    def _tenant(self, tenant: str | None, integration: Integration | None) -> str | None:
        """The tenant counted apart: one the config knows, else None (shared by the rest)."""
        if tenant is None:
            return None
        known = integration.tenants if integration is not None else self._tenants
        return tenant if tenant in known else None

    async def _against_baseline(
        self,
        tool: Tool,
        call: CallContext,
        integration: Integration | None,
        guard: Guard,
        base: str,
        minute: int,
        count: int,
    ) -> None:
        """Raise a `baseline` anomaly when this minute's count first passes its threshold."""
        spec = guard.baseline
        assert spec is not None  # the caller checked
        key = f"{base}:base"
        if count == 1:  # the first call of the minute, on whichever replica: fold the last
            await self._fold(key, base, minute, spec)
        known = self._rates.get(key)
        if known is None or known[0] != minute:
            state = _state(await self._store.get(key))
            if state is None:
                return
            folded, rate, first = state
            known = (minute, rate, first)
            if folded >= minute - 1:  # up to date: good for the rest of this minute
                self._rates[key] = known
        _, rate, first = known
        if minute - first < spec.warmup_min:
            return
        threshold = max(float(spec.min_per_minute), spec.factor * rate)
        if count > threshold >= count - 1:
            extra = {"baseline_per_minute": round(rate, 3)}
            self._anomaly(tool, call, integration, guard, "baseline", threshold, count, extra)

    async def _fold(self, key: str, base: str, minute: int, spec: GuardBaseline) -> None:
        """Bring the baseline up to the end of the previous minute (once per minute)."""
        raw = await self._store.get(key)
        state = _state(raw)
        if state is None:
            fresh = (minute - 1, 0.0, minute)
        else:
            folded, rate, first = state
            if folded >= minute - 1:
                return
            # Every minute with calls had its first call fold the minutes before it, so only
            # the minute after the last fold can hold calls: the ones since were quiet.
            calls = _number(await self._store.get(f"{base}:m:{folded + 1}")) or 0.0
            keep = 0.5 ** (1.0 / spec.half_life_min)  # the weight left to a minute after one
            rate = keep * rate + (1.0 - keep) * calls
            rate *= keep ** (minute - 2 - folded)
            fresh = (minute - 1, rate, first)
        value = json.dumps({"m": fresh[0], "r": fresh[1], "s": fresh[2]}).encode()
        # A replica that folded first wins; this one's result would be the same.
        await self._store.compare_and_set(key, raw, value, ttl_s=_BASELINE_TTL_S)

    def _anomaly(
        self,
        tool: Tool,
        call: CallContext,
        integration: Integration | None,
        guard: Guard,
        kind: str,
        limit: float,
        count: int,
        extra: dict[str, float] | None = None,
    ) -> None:
        if not self._emitter.active:
            return
        blocks = guard.action == "block" and kind != "baseline"
        details: dict[str, object] = {"kind": kind, "limit": limit, "count": count}
        details["action"] = guard.action
        if blocks and kind == "per_minute":
            details["cool_off_s"] = guard.cool_off_s
        details.update(extra or {})
        self._emitter.emit(
            Event(
                kind="anomaly",
                tool=tool.name,
                call_id=call.id,
                integration=integration.name if integration is not None else None,
                tenant=call.tenant,
                outcome="blocked" if blocks else "alert",
                extra=details,
            )
        )


def _paused(tool: Tool, call: CallContext, left_s: float) -> QuotaExceeded:
    minutes = max(1, math.ceil(left_s / 60))
    return QuotaExceeded(
        f"{tool.name} is paused for this account for about {minutes} minute"
        f"{'s' if minutes != 1 else ''} because it was called unusually often, so nothing was "
        f"sent. Do not try again: tell the caller it cannot be done right now and {_OFFER}.",
        tool=tool.name,
        call_id=call.id,
    )


def _number(raw: bytes | None) -> float | None:
    """A number the guard stored (a count or a time), or None when absent or unreadable."""
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _state(raw: bytes | None) -> tuple[int, float, int] | None:
    """A stored baseline as (last minute folded, calls per minute, first minute), or None."""
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        state = (int(data["m"]), float(data["r"]), int(data["s"]))
    except (ValueError, TypeError, KeyError):
        return None
    return state if math.isfinite(state[1]) and state[1] >= 0 else None
