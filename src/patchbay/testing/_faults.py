"""A reverse proxy that breaks on purpose: the upstream failures a voice call must survive.

``FaultProxy`` sits on a loopback port in front of a real upstream and forwards every request,
except those a ``Fault`` rule (or the random ``chaos`` mix) picks: those get an error status, a
hang, a reset connection, a body that is not JSON, a delay, or a response lost after the upstream
committed; or a hostile body: one that never ends, a gzip bomb, a Content-Length that lies, or
JSON nested 200,000 deep. It also records when each request arrived, so tests can check rates.
"""

from __future__ import annotations

import asyncio
import bisect
import enum
import functools
import random
import socket
import struct
import time
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from http import HTTPStatus
from types import TracebackType
from typing import Self

import aiohttp
from aiohttp import web
from yarl import URL

__all__ = ["Fault", "FaultKind", "FaultProxy", "ProxyStats"]

RetryAfter = int | float | str | datetime | None
_JSON = "application/json"

# Hop-by-hop headers describe one connection, not the message; a proxy must not pass them on.
_HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "host", "content-length",
    }
)  # fmt: skip


class FaultKind(enum.StrEnum):
    """What a fault does to the request it picks."""

    STATUS = "status"  # answer `status` with a JSON body, optionally Retry-After
    HANG = "hang"  # never answer; ends when the client gives up or the proxy stops
    RESET = "reset"  # abort the TCP connection with no response
    GARBAGE = "garbage"  # 200, content-type application/json, body not JSON
    SLOW = "slow"  # wait delay_s, then forward
    LOSE_RESPONSE = "lose_response"  # forward so the upstream commits, then reset the client
    # Hostile bodies: the request is forwarded, and the upstream's status comes back with
    ENDLESS = "endless"  # a chunked JSON string that never ends
    GZIP_BOMB = "gzip_bomb"  # Content-Encoding gzip, `size` bytes once decompressed
    SHORT_LENGTH = "short_length"  # its body, whole, under a Content-Length of half of it
    LONG_LENGTH = "long_length"  # its body under a longer Content-Length, then the proxy closes
    DEEP_JSON = "deep_json"  # JSON lists nested `size` deep


# Defaults of `Fault.size`: a bomb far past any sane answer limit (it packs to about 250 KB),
# and nesting far past any recursion limit.
_DEFAULT_SIZES = {FaultKind.GZIP_BOMB: 256 * 1024 * 1024, FaultKind.DEEP_JSON: 200_000}
_CHUNK = b"a" * 65536


_HOSTILE_BODIES = frozenset(
    {FaultKind.ENDLESS, FaultKind.GZIP_BOMB, FaultKind.SHORT_LENGTH, FaultKind.LONG_LENGTH,
     FaultKind.DEEP_JSON}
)  # fmt: skip


# The keys of a fault written as a mapping (scenario files, the mock's control endpoint).
_MAPPING_KEYS: dict[str, type | tuple[type, ...]] = {
    "kind": str,
    "status": int,
    "times": int,
    "retry_after": (int, float, str),
    "delay_s": (int, float),
    "method": str,
    "path_prefix": str,
    "probability": (int, float),
    "body": str,
    "size": int,
}
_MAPPING_WORDS = {
    "kind": "a fault kind",
    "status": "an HTTP status like 503",
    "times": "a whole number",
    "retry_after": "seconds or an HTTP date",
    "delay_s": "seconds",
    "method": "an HTTP method",
    "path_prefix": "a path like /payments",
    "probability": "a number from 0 to 1",
    "body": "text",
    "size": "a whole number",
}


def _shown(value: object) -> str:
    """A value as a mistake message quotes it: short, and typed (`'boom'`, `[1]`)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


@dataclass(frozen=True, slots=True)
class Fault:
    """One rule: which requests it picks, how many times, and what it does to them."""

    kind: FaultKind | str
    method: str | None = None
    path_prefix: str | None = None
    times: int | None = None
    probability: float = 1.0
    status: int = 503
    retry_after: RetryAfter = None
    delay_s: float = 1.0
    body: str | bytes | None = None
    size: int | None = None  # gzip_bomb: decompressed bytes; deep_json: nesting depth

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))
        if self.method is not None:
            object.__setattr__(self, "method", self.method.upper())
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be within [0, 1], got {self.probability}")
        if self.times is not None and self.times < 0:
            raise ValueError(f"times must be None or >= 0, got {self.times}")
        if self.delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {self.delay_s}")
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status, got {self.status}")
        if self.size is not None and self.size < 1:
            raise ValueError(f"size must be None or >= 1, got {self.size}")

    def matches(self, method: str, path: str) -> bool:
        """Whether this rule applies to a request, ignoring times and probability."""
        return (self.method is None or self.method == method.upper()) and (
            self.path_prefix is None or path.startswith(self.path_prefix)
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> Fault:
        """A rule written as a mapping (`{status: 429, times: 1, retry_after: 60}`,
        `{kind: hang}`); raises ValueError naming the key at fault.

        Without `kind`, a `status` key means a status fault.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a fault is a mapping like {{status: 500}}, not {_shown(data)}")
        unknown = sorted(str(k) for k in data if k not in _MAPPING_KEYS)
        if unknown:
            known = ", ".join(sorted(_MAPPING_KEYS))
            raise ValueError(f"unknown fault key {unknown[0]!r}; a fault takes {known}")
        kind = data.get("kind", FaultKind.STATUS if "status" in data else None)
        if kind is None:
            raise ValueError("a fault needs a kind (e.g. {kind: hang}) or a status")
        if not isinstance(kind, str) or kind not in FaultKind.__members__.values():
            kinds = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"unknown fault kind {_shown(kind)}; the kinds are {kinds}")
        values: dict[str, object] = {"kind": FaultKind(kind)}
        for key, types in _MAPPING_KEYS.items():
            if key == "kind" or key not in data:
                continue
            value = data[key]
            # bool is an int to Python, never to a fault: `times: true` is a mistake
            if isinstance(value, bool) or not isinstance(value, types):
                raise ValueError(f"{key} must be {_MAPPING_WORDS[key]}, not {_shown(value)}")
            values[key] = value
        return cls(**values)  # type: ignore[arg-type]  # each value's type checked above


@dataclass(slots=True)
class _Armed:
    fault: Fault
    remaining: int | None


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """What the proxy saw. Times are seconds since the first request."""

    total: int
    forwarded: int
    faults: Mapping[str, int]
    by_path: Mapping[str, int]
    timestamps: tuple[float, ...] = field(repr=False)

    @property
    def per_second(self) -> tuple[int, ...]:
        """Requests in each whole second since the first request, including empty seconds."""
        if not self.timestamps:
            return ()
        counts = [0] * (int(self.timestamps[-1]) + 1)
        for t in self.timestamps:
            counts[int(t)] += 1
        return tuple(counts)

    @property
    def max_per_second(self) -> int:
        """The busiest whole second."""
        return max(self.per_second, default=0)

    def max_in_window(self, window_s: float = 1.0) -> int:
        """The most requests inside any sliding window of window_s seconds."""
        best = 0
        for i, start in enumerate(self.timestamps):
            best = max(best, bisect.bisect_left(self.timestamps, start + window_s) - i)
        return best


def _retry_after(value: RetryAfter) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return format_datetime(value, usegmt=True)
    return str(int(value)) if float(value).is_integer() else str(value)


@functools.lru_cache(maxsize=4)
def _gzip_bomb(size: int) -> bytes:
    """A gzip member that inflates to a JSON string of `size` bytes (built once per size)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip header and trailer
    parts = [packer.compress(b'{"data":"')]
    left = size
    while left > 0:
        parts.append(packer.compress(_CHUNK[: min(left, len(_CHUNK))]))
        left -= len(_CHUNK)
    parts.append(packer.compress(b'"}'))
    parts.append(packer.flush())
    return b"".join(parts)


def _prepare(fault: Fault) -> None:
    # A bomb takes seconds to pack: pack it when the rule is set, not while requests wait.
    if fault.kind is FaultKind.GZIP_BOMB:
        _gzip_bomb(fault.size or _DEFAULT_SIZES[FaultKind.GZIP_BOMB])


def _deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _raw_answer(request: web.BaseRequest, status: int, body: bytes, declared: int) -> None:
    """Write an answer whose Content-Length is `declared` whatever the body, then close.

    Written to the socket by hand: aiohttp (rightly) never sends a length that lies. Nothing
    says the connection ends, so bytes past a short length look like the next answer's start.
    """
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    reason = web.Response(status=status).reason
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {_JSON}\r\nContent-Length: {declared}\r\n\r\n"
    )
    transport.write(head.encode() + body)
    transport.close()  # after the write is flushed: a FIN, not a reset


def _reset(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0 makes close() send RST instead of FIN: the client sees a reset, not an EOF.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class FaultProxy:
    """A loopback reverse proxy in front of ``upstream`` that injects programmed faults."""

    def __init__(
        self, upstream: str, *, host: str = "127.0.0.1", port: int = 0, seed: int | None = None
    ) -> None:
        self.upstream = URL(upstream.rstrip("/"))
        self.host = host
        self.port = port
        self._rules: list[_Armed] = []
        self._chaos: list[tuple[float, Fault]] = []
        self._rng = random.Random(seed)
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.reset_stats()

    @property
    def url(self) -> str:
        """Base URL clients should use instead of the upstream's."""
        if self._runner is None:
            raise RuntimeError("FaultProxy is not running; use `async with` or start()")
        return f"http://{self.host}:{self.port}"

    def add(self, fault: Fault) -> Fault:
        """Append a rule; rules are consulted in the order added."""
        _prepare(fault)
        self._rules.append(_Armed(fault, fault.times))
        return fault

    def clear(self) -> None:
        """Drop every rule and the chaos mix: forward everything again."""
        self._rules.clear()
        self._chaos.clear()

    def seed(self, random_seed: int) -> None:
        """Make probabilities and the chaos mix repeatable."""
        self._rng = random.Random(random_seed)

    def chaos(
        self,
        mix: Mapping[FaultKind | str, float],
        *,
        status: int = 503,
        retry_after: RetryAfter = None,
        delay_s: float = 0.5,
        method: str | None = None,
        path_prefix: str | None = None,
    ) -> None:
        """Give each request that no rule picked the kind's probability of that fault."""
        total = sum(mix.values())
        if total > 1.0 + 1e-9 or any(p < 0 for p in mix.values()):
            raise ValueError(f"chaos probabilities must be >= 0 and sum to <= 1, got {total}")
        self._chaos.clear()
        edge = 0.0
        for kind, probability in mix.items():
            edge += probability
            fault = Fault(
                kind,
                method=method,
                path_prefix=path_prefix,
                status=status,
                retry_after=retry_after,
                delay_s=delay_s,
            )
            _prepare(fault)
            self._chaos.append((edge, fault))

    def reset_stats(self) -> None:
        """Forget every request seen so far."""
        self._first: float | None = None
        self._times: list[float] = []
        self._forwarded = 0
        self._faults: Counter[str] = Counter()
        self._paths: Counter[str] = Counter()

    def stats(self) -> ProxyStats:
        """Counts of requests seen, forwarded and faulted, and when each arrived."""
        return ProxyStats(
            total=len(self._times),
            forwarded=self._forwarded,
            faults=dict(self._faults),
            by_path=dict(self._paths),
            timestamps=tuple(self._times),
        )

    def _pick(self, method: str, path: str) -> Fault | None:
        for armed in self._rules:
            if armed.remaining == 0 or not armed.fault.matches(method, path):
                continue
            if armed.fault.probability < 1.0 and self._rng.random() >= armed.fault.probability:
                continue
            if armed.remaining is not None:
                armed.remaining -= 1
            return armed.fault
        if self._chaos:
            draw = self._rng.random()
            for edge, fault in self._chaos:
                if draw < edge:
                    return fault if fault.matches(method, path) else None
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        if self._first is None:
            self._first = now
        self._times.append(now - self._first)
        self._paths[f"{request.method} {request.path}"] += 1
        fault = self._pick(request.method, request.path)
        if fault is None:
            return await self._forward(request)
        self._faults[str(fault.kind)] += 1
        kind = FaultKind(fault.kind)
        if kind is FaultKind.STATUS:
            return self._status(fault)
        if kind is FaultKind.GARBAGE:
            body = fault.body if fault.body is not None else b"<html>oops"
            raw = body.encode() if isinstance(body, str) else body
            return web.Response(body=raw, content_type="application/json")
        if kind is FaultKind.SLOW:
            await asyncio.sleep(fault.delay_s)
            return await self._forward(request)
        if kind in _HOSTILE_BODIES:
            return await self._hostile(request, fault, kind)
        if kind is FaultKind.HANG:
            # aiohttp cancels this handler when the client disconnects (handler_cancellation),
            # and stop() sets the event: either way nothing outlives the proxy.
            await self._stopping.wait()
        elif kind is FaultKind.LOSE_RESPONSE:
            await self._forward(request)
        else:
            await request.read()  # the client finishes sending, so it fails reading the answer
        _reset(request)
        # The connection is gone; aiohttp drops this response quietly when writing fails.
        return web.Response(status=502)

    async def _hostile(
        self, request: web.Request, fault: Fault, kind: FaultKind
    ) -> web.StreamResponse:
        # Forwarded first, as by a broken proxy in front of the API: the upstream did the work
        # (a payment is charged) and answered with its status; only the body is hostile.
        upstream = await self._forward(request)
        status = upstream.status
        size = fault.size if fault.size is not None else _DEFAULT_SIZES.get(kind, 0)
        if kind is FaultKind.GZIP_BOMB:
            headers = {"Content-Encoding": "gzip"}
            bomb = _gzip_bomb(size)
            return web.Response(status=status, body=bomb, headers=headers, content_type=_JSON)
        if kind is FaultKind.DEEP_JSON:
            return web.Response(status=status, body=_deep_json(size), content_type=_JSON)
        if kind is FaultKind.ENDLESS:
            return await self._endless(request, status)
        body = upstream.body if isinstance(upstream.body, bytes) else b"{}"
        declared = len(body) // 2 if kind is FaultKind.SHORT_LENGTH else len(body) + 1000
        _raw_answer(request, status, body, declared)
        # The connection is closing; aiohttp drops this response quietly when writing fails.
        return web.Response(status=502)

    async def _endless(self, request: web.Request, status: int) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers={"Content-Type": _JSON})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"data":"')
        try:
            # Until the client gives up (its reads stop, the write blocks, aiohttp cancels this
            # handler when it disconnects) or the proxy stops.
            while not self._stopping.is_set():
                await response.write(_CHUNK)
        except ConnectionError:  # aiohttp's ClientConnectionResetError is one
            return response
        _reset(request)  # stopped: the body must not look finished
        return response

    def _status(self, fault: Fault) -> web.Response:
        headers = {}
        retry_after = _retry_after(fault.retry_after)
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        if fault.body is not None:
            raw = fault.body.encode() if isinstance(fault.body, str) else fault.body
            return web.Response(status=fault.status, body=raw, headers=headers)
        phrase = HTTPStatus(fault.status).phrase.lower()
        payload = {"error": f"{phrase} (injected)", "code": f"FAULT_{fault.status}"}
        return web.json_response(payload, status=fault.status, headers=headers)

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        target = URL(str(self.upstream) + request.raw_path, encoded=True)
        body = await request.read()
        try:
            async with self._session.request(
                request.method, target, headers=headers, data=body or None
            ) as answer:
                payload = await answer.read()
                back = [(k, v) for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP]
                status = answer.status
        except (aiohttp.ClientError, OSError) as exc:
            return web.json_response(
                {"error": f"upstream unreachable: {type(exc).__name__}", "code": "PROXY_502"},
                status=502,
            )
        self._forwarded += 1
        response = web.Response(status=status, body=payload)
        response.headers.clear()  # upstream decides content-type, not aiohttp's default
        response.headers.extend(back)
        return response

    async def start(self) -> Self:
        """Bind a loopback port and start forwarding."""
        if self._runner is not None:
            raise RuntimeError("FaultProxy is already running")
        self._stopping = asyncio.Event()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        # Binding here, not in TCPSite, tells us the port the kernel chose for port 0.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(runner, sock, backlog=1024).start()
        self._runner = runner
        return self

    async def stop(self) -> None:
        """Release hanging requests, close every connection and the port."""
        self._stopping.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        state = self.url if self._runner is not None else "stopped"
        return f"<FaultProxy {state} -> {self.upstream} rules={len(self._rules)}>"
