"""Live figures for the operators' dashboard, kept in process from runtime events.

`LiveBoard` is an EventSink. It keeps, over a sliding window (five minutes by default, in
slices of ten seconds), per tool and per upstream endpoint: calls, successes, outcomes by code
and a latency histogram; per integration: rate-limit waits and refusals, retries and breaker
transitions; and short lists of the latest tool calls, anomalies, deprecations and webhooks
that matched no call. Every figure is kept per tenant, so a tenant's view holds its own only.

Memory is bounded whatever callers send: tool names the config does not have and tenants it
does not know are counted under one label each, each kind of series stops taking new keys at
`max_series` (later ones are counted together under `other`), a slice holds at most
`MAX_CODES` codes, and the lists are fixed-length. Only allowlisted fields are kept: never
arguments, answers, call ids, callers or free text from `extra`.
"""

from __future__ import annotations

import math
import time
from array import array
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from patchbay.observe._events import Event

__all__ = ["MAX_CODES", "LiveBoard", "Sketch"]

OTHER = "other"
UNKNOWN_TOOL = "unknown"
MAX_CODES = 32  # distinct outcome codes one slice keeps; the rest are counted as OTHER

# Latency histogram: bins growing by 8 % from 0.05 ms (DDSketch's log buckets: a percentile
# read from them is within 4 % of the true value). Written by hand: a fixed array per time
# slice merges by addition, which the sketch libraries' per-object structures make costly.
_GAMMA = 1.08
_LOG_GAMMA = math.log(_GAMMA)
_MIN_MS = 0.05
_BINS = 220  # up to about 1.2e6 ms (20 minutes); anything slower lands in the last bin


def _bin(ms: float) -> int:
    if not ms > _MIN_MS:  # also NaN
        return 0
    return min(_BINS - 1, math.ceil(math.log(ms / _MIN_MS) / _LOG_GAMMA))


def _bin_value(index: int) -> float:
    """A bin's representative: within (gamma-1)/(gamma+1) of every value in it."""
    if index == 0:
        return _MIN_MS
    return _MIN_MS * _GAMMA**index * 2 / (_GAMMA + 1)


class Sketch:
    """Counts of latencies in log-spaced bins; percentiles with a bounded relative error."""

    __slots__ = ("bins", "count")

    def __init__(self) -> None:
        self.bins = array("I", bytes(4 * _BINS))
        self.count = 0

    def add(self, ms: float) -> None:
        """Count one latency in milliseconds."""
        self.bins[_bin(ms)] += 1
        self.count += 1

    def merge(self, other: Sketch) -> None:
        """Add another sketch's counts to this one."""
        if other.count:
            bins = self.bins
            for i, n in enumerate(other.bins):
                if n:
                    bins[i] += n
            self.count += other.count

    def percentile(self, q: float) -> float | None:
        """The q-quantile (0 < q <= 1) by nearest rank, or None without observations."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for i, n in enumerate(self.bins):
            seen += n
            if seen >= rank:
                return round(_bin_value(i), 3)
        return round(_bin_value(_BINS - 1), 3)  # pragma: no cover - counts always add up


class _Slice:
    """One slice of time of one series."""

    __slots__ = ("calls", "codes", "index", "ok", "sketch")

    def __init__(self, index: int) -> None:
        self.index = index
        self.calls = 0
        self.ok = 0
        self.codes: dict[str, int] = {}
        self.sketch: Sketch | None = None

    def add(self, outcome: str, latency_ms: float | None, success: bool) -> None:
        self.calls += 1
        if success:
            self.ok += 1
        else:
            codes = self.codes
            key = outcome if outcome in codes or len(codes) < MAX_CODES else OTHER
            codes[key] = codes.get(key, 0) + 1
        if latency_ms is not None:
            if self.sketch is None:
                self.sketch = Sketch()
            self.sketch.add(latency_ms)


class _Series:
    """A key's slices, oldest first, none older than the window."""

    __slots__ = ("slices",)

    def __init__(self) -> None:
        self.slices: deque[_Slice] = deque()

    def slice(self, index: int, oldest: int) -> _Slice:
        slices = self.slices
        if slices and slices[-1].index == index:
            return slices[-1]
        while slices and slices[0].index < oldest:
            slices.popleft()
        if slices and slices[-1].index > index:
            # An event stamped earlier than the newest slice (clocks, queues): find its own.
            for s in slices:
                if s.index == index:
                    return s
            return slices[-1]
        fresh = _Slice(index)
        slices.append(fresh)
        return fresh


Key = tuple[str, ...]


class _Family:
    """Series of one kind by key, at most `max_series` keys (the overflow one included)."""

    __slots__ = ("max_series", "overflow", "pruned", "series")

    def __init__(self, width: int, max_series: int) -> None:
        self.series: dict[Key, _Series] = {}
        self.max_series = max_series
        self.overflow: Key = (OTHER,) * width
        self.pruned = -1  # the oldest slice index of the last pruning

    def get(self, key: Key, oldest: int) -> _Series:
        found = self.series.get(key)
        if found is None:
            if len(self.series) >= self.max_series - 1 and oldest > self.pruned:
                self.prune(oldest)  # at most once per slice: series gone quiet make room
            if len(self.series) >= self.max_series - 1:
                key = self.overflow
                found = self.series.get(key)
            if found is None:
                found = self.series[key] = _Series()
        return found

    def prune(self, oldest: int) -> None:
        """Forget slices older than the window, and series left without any."""
        self.pruned = oldest
        for key, s in list(self.series.items()):
            while s.slices and s.slices[0].index < oldest:
                s.slices.popleft()
            if not s.slices:
                del self.series[key]


def _text(value: Any, limit: int = 80) -> str | None:
    """A short identifier from `extra`, or None (anything else is dropped, never shown)."""
    if isinstance(value, str) and value:
        return value[:limit]
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class LiveBoard:
    """An EventSink keeping the figures the dashboard shows (see the module docstring)."""

    def __init__(
        self,
        *,
        tools: Collection[str] | None = None,
        tenants: Collection[str] | None = None,
        window_s: float = 300.0,
        slice_s: float = 10.0,
        recent: int = 50,
        max_series: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (slice_s > 0 and window_s >= slice_s):
            raise ValueError("LiveBoard needs 0 < slice_s <= window_s")
        self.window_s = float(window_s)
        self.slice_s = float(slice_s)
        self._slices = math.ceil(window_s / slice_s)
        self._tools = None if tools is None else frozenset(tools)
        self._tenants = None if tenants is None else frozenset(tenants)
        self.clock = clock
        self.tool_calls = _Family(2, max_series)  # (tenant, tool)
        self.attempts = _Family(4, max_series)  # (tenant, integration, method, path)
        self.limits = _Family(2, max_series)  # (tenant, integration): waits, refusals, retries
        self.recent: deque[tuple[Event, str, str]] = deque(maxlen=recent)
        self.anomalies: deque[dict[str, Any]] = deque(maxlen=recent)
        self.deprecations: deque[dict[str, Any]] = deque(maxlen=recent)
        self.unmatched: deque[dict[str, Any]] = deque(maxlen=recent)
        self.breaker_events: deque[dict[str, Any]] = deque(maxlen=recent)
        # Breaker endpoints seen per integration, for reading per-endpoint breakers' state.
        self.breaker_endpoints: dict[str, set[str]] = {}
        self._handlers: dict[str, Callable[[Event], None]] = {
            "tool_call": self._tool_call,
            "attempt": self._attempt,
            "policy": self._policy,
            "anomaly": self._anomaly,
            "deprecation": self._deprecation,
            "webhook_unmatched": self._webhook_unmatched,
        }

    # -- labels ------------------------------------------------------------------------------

    def tool(self, name: str) -> str:
        """A tool's label: itself when the config has it (or no tools were given), else unknown."""
        known = self._tools
        return name if known is None or name in known else UNKNOWN_TOOL

    def tenant(self, name: str | None) -> str:
        """A tenant's label: itself when known (or none were given), else other; "" for none."""
        if not name:
            return ""
        known = self._tenants
        return name[:64] if known is None or name in known else OTHER

    # -- intake ------------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Count one event."""
        handler = self._handlers.get(event.kind)
        if handler is not None:
            handler(event)

    def _index(self, ts: float) -> tuple[int, int]:
        index = math.floor(ts / self.slice_s)
        return index, index - self._slices + 1

    def _tool_call(self, e: Event) -> None:
        outcome = e.outcome or "unknown"
        tool, tenant = self.tool(e.tool), self.tenant(e.tenant)
        index, oldest = self._index(e.ts)
        latency = _number(e.latency_ms)
        series = self.tool_calls.get((tenant, tool), oldest)
        series.slice(index, oldest).add(outcome, latency, outcome == "ok")
        # The event itself (frozen): the row is made when someone looks (see `recent_calls`).
        self.recent.append((e, tool, tenant))

    def _attempt(self, e: Event) -> None:
        outcome = e.outcome or "unknown"
        key = (
            self.tenant(e.tenant),
            (e.integration or "")[:64],
            (e.method or "")[:10],
            (e.path or "")[:120],
        )
        index, oldest = self._index(e.ts)
        series = self.attempts.get(key, oldest)
        series.slice(index, oldest).add(outcome, _number(e.latency_ms), outcome == "ok")

    def _policy(self, e: Event) -> None:
        outcome = e.outcome or ""
        policy = e.extra.get("policy")
        integration = (e.integration or "")[:64]
        if outcome in ("retry", "rate_wait", "rate_limited", "circuit_open"):
            index, oldest = self._index(e.ts)
            series = self.limits.get((self.tenant(e.tenant), integration), oldest)
            series.slice(index, oldest).add(outcome, None, False)
        if policy == "breaker" and outcome.startswith("breaker_"):
            endpoint = _text(e.extra.get("endpoint"), 140) or "*"
            state = _text(e.extra.get("state"), 20) or outcome.removeprefix("breaker_")
            ends = self.breaker_endpoints.get(integration)
            if ends is None and len(self.breaker_endpoints) < 256:
                ends = self.breaker_endpoints[integration] = set()
            if ends is not None and len(ends) < 64:
                ends.add(endpoint)
            self.breaker_events.append(
                {
                    "ts": e.ts,
                    "integration": integration,
                    "tenant": self.tenant(e.tenant) or None,
                    "endpoint": endpoint,
                    "state": state,
                }
            )

    def _anomaly(self, e: Event) -> None:
        self.anomalies.append(
            {
                "ts": e.ts,
                "tool": self.tool(e.tool),
                "tenant": self.tenant(e.tenant) or None,
                "kind": _text(e.extra.get("kind"), 20),
                "action": _text(e.outcome, 20),
                "count": _number(e.extra.get("count")),
                "limit": _number(e.extra.get("limit")),
            }
        )

    def _deprecation(self, e: Event) -> None:
        x = e.extra
        endpoint = _text(x.get("endpoint"), 140)
        if endpoint is None:
            endpoint = " ".join(filter(None, (_text(e.method, 10), _text(e.path, 120)))) or None
        self.deprecations.append(
            {
                "ts": e.ts,
                "tool": self.tool(e.tool),
                "tenant": self.tenant(e.tenant) or None,
                "integration": _text(e.integration, 64),
                "endpoint": endpoint,
                "deprecated": x.get("deprecated") is True,
                "since": _text(x.get("since"), 40),
                "sunset": _text(x.get("sunset"), 40),
                "link": _text(x.get("link"), 200),
                "words": _text(x.get("words"), 240),
            }
        )

    def _webhook_unmatched(self, e: Event) -> None:
        self.unmatched.append(
            {
                "ts": e.ts,
                "source": _text(e.extra.get("source"), 64) or _text(e.integration, 64),
                "tenant": self.tenant(e.tenant) or None,
                "type": _text(e.extra.get("type"), 80) or _text(e.extra.get("event"), 80),
                "reason": _text(e.extra.get("reason"), 80),
            }
        )

    # -- figures -----------------------------------------------------------------------------

    def _bounds(self, now: float) -> tuple[int, int, int]:
        """(index of now, oldest index in the window, oldest index of the last minute)."""
        index = math.floor(now / self.slice_s)
        minute = max(1, math.ceil(60.0 / self.slice_s))
        return index, index - self._slices + 1, index - min(minute, self._slices) + 1

    def _stats(self, series: Iterable[_Series], now: float) -> dict[str, Any]:
        index, oldest, minute = self._bounds(now)
        calls = ok = last_minute = 0
        codes: dict[str, int] = {}
        sketch = Sketch()
        for s in series:
            for sl in s.slices:
                if sl.index < oldest or sl.index > index:
                    continue
                calls += sl.calls
                ok += sl.ok
                if sl.index >= minute:
                    last_minute += sl.calls
                for code, n in sl.codes.items():
                    codes[code] = codes.get(code, 0) + n
                if sl.sketch is not None:
                    sketch.merge(sl.sketch)
        covered = max(now - minute * self.slice_s, 1e-9)  # from the minute's first slice to now
        return {
            "calls": calls,
            "rate_per_min": round(last_minute * 60.0 / covered, 2),
            "success_rate": round(ok / calls, 4) if calls else None,
            "p50_ms": sketch.percentile(0.50),
            "p95_ms": sketch.percentile(0.95),
            "p99_ms": sketch.percentile(0.99),
            "errors": dict(sorted(codes.items(), key=lambda kv: (-kv[1], kv[0]))),
        }

    def _grouped(
        self, family: _Family, tenant: str | None, group: Callable[[Key], Key]
    ) -> dict[Key, list[_Series]]:
        """The family's series by `group(key)`; only `tenant`'s when one is given."""
        out: dict[Key, list[_Series]] = {}
        for key, s in family.series.items():
            if tenant is not None and key[0] != tenant:
                continue
            out.setdefault(group(key), []).append(s)
        return out

    def prune(self, now: float | None = None) -> None:
        """Forget what has left the window (done before every snapshot)."""
        _, oldest, _ = self._bounds(self.clock() if now is None else now)
        for family in (self.tool_calls, self.attempts, self.limits):
            family.prune(oldest)

    def tools_figures(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Per tool: calls, rate, success rate, p50/p95/p99 and errors by code."""
        now = self.clock()
        grouped = self._grouped(self.tool_calls, tenant, lambda k: (k[1],))
        rows = [{"tool": k[0], **self._stats(v, now)} for k, v in grouped.items()]
        return sorted(rows, key=lambda r: (-r["calls"], r["tool"]))

    def endpoint_figures(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Per upstream endpoint (integration, method, path template): the same figures."""
        now = self.clock()
        grouped = self._grouped(self.attempts, tenant, lambda k: k[1:])
        rows = [
            {"integration": k[0], "method": k[1], "path": k[2], **self._stats(v, now)}
            for k, v in grouped.items()
        ]
        return sorted(rows, key=lambda r: (-r["calls"], r["integration"], r["path"]))

    def sends(self, integration: str, tenants: Callable[[str], bool]) -> dict[str, Any]:
        """Attempts, waits, refusals and retries of one integration's calls by the tenants
        `tenants` accepts (by label), over the last minute and the window."""
        now = self.clock()
        attempts = [
            s for k, s in self.attempts.series.items() if k[1] == integration and tenants(k[0])
        ]
        limits = [s for k, s in self.limits.series.items() if k[1] == integration and tenants(k[0])]
        sent, policy = self._stats(attempts, now), self._stats(limits, now)
        codes = policy["errors"]
        return {
            "sent": sent["calls"],
            "rate_per_s": round(sent["rate_per_min"] / 60.0, 3),
            "waits": codes.get("rate_wait", 0),
            "refused": codes.get("rate_limited", 0),
            "retries": codes.get("retry", 0),
            "circuit_open": codes.get("circuit_open", 0),
        }

    def recent_calls(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """The latest tool calls, newest first: tool, integration, tenant, outcome, code,
        latency, attempts, time; never arguments, answers, callers or call ids."""
        rows = []
        for e, tool, label in reversed(self.recent):
            if tenant is not None and label != tenant:
                continue
            outcome = e.outcome or "unknown"
            latency = _number(e.latency_ms)
            rows.append(
                {
                    "ts": e.ts,
                    "tool": tool,
                    "integration": _text(e.integration, 64),
                    "tenant": label or None,
                    "outcome": "ok" if outcome == "ok" else "error",
                    "code": None if outcome == "ok" else outcome[:40],
                    "latency_ms": None if latency is None else round(latency, 1),
                    "attempts": e.attempt if isinstance(e.attempt, int) else None,
                    "cached": bool(e.extra.get("cached")),
                }
            )
        return rows

    def listed(self, items: Iterable[Mapping[str, Any]], tenant: str | None) -> list[Any]:
        """The newest first, only `tenant`'s when one is given."""
        return [dict(i) for i in reversed(list(items)) if tenant is None or i["tenant"] == tenant]
