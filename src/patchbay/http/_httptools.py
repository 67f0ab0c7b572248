"""A lean HTTP/1.1 client transport on asyncio protocols and the httptools response parser."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from urllib.parse import quote, urlsplit

import httptools

from patchbay.http._body import (
    BodyTooLarge,
    BodyUnreadable,
    Inflater,
    inflater_for,
    length_over,
    too_large,
)
from patchbay.http._proxy import TunnelError, absolute_form, open_tunnel, refused_by_proxy
from patchbay.http._transport import _reason, _where
from patchbay.http._types import ConnectError, Proxy, Request, Response, TransportError
from patchbay.http._wire import Origin, encode, parse_origin

__all__ = ["HttptoolsTransport"]

_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"  # reserved and already-escaped characters stay as they are
_MAX_ORIGINS = 256
_MAX_HEAD = 1 << 20  # bytes until an answer's headers end (aiohttp's limits allow about 1 MiB)


class _Failure(Exception):
    """A network failure inside the transport; `send` adds where it happened."""


class _TooLarge(Exception):
    """The answer (its status in args[0]) passed the request's `max_response_bytes`."""


_Key = tuple[Origin, ssl.SSLContext | None, Proxy | None]
_Answer = tuple[int, dict[str, str], list[bytes]]


def _expire(fut: asyncio.Future[_Answer]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class _Conn(asyncio.Protocol):
    """One keep-alive connection: feeds bytes to its parser, resolves one answer at a time."""

    __slots__ = (
        "body",
        "fut",
        "gone",
        "head_only",
        "head_room",
        "headers",
        "headers_done",
        "idle",
        "idle_since",
        "inflater",
        "key",
        "limit",
        "lost",
        "parser",
        "pool",
        "reusable",
        "size",
        "status",
        "transport",
    )

    def __init__(self, pool: _Pool, key: _Key) -> None:
        self.pool = pool
        self.key = key
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.fut: asyncio.Future[_Answer] | None = None
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.status = 0
        self.headers_done = False
        self.head_only = False
        self.reusable = False
        self.lost = False  # the socket is gone (either side closed it)
        self.gone = False  # the pool has let go of it and its slot
        self.idle = False
        self.idle_since = 0.0
        self.limit = 0  # decoded bytes the current answer may have; set by `send`
        self.head_room = 0
        self.size = 0
        self.inflater: Inflater | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.headers_done:
            # the parser keeps a header it has not finished: an endless one must end here
            self.head_room -= len(data)
            if self.head_room < 0:
                self._fail(_TooLarge(None))
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail("the server switched protocols")
        except httptools.HttpParserError as exc:
            # a callback's own exception stops the parser and comes back as the context
            cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else None
            if isinstance(cause, BodyTooLarge):
                self._fail(_TooLarge(self.status))
            elif isinstance(cause, BodyUnreadable):
                self._fail(str(cause))
            else:
                self._fail(f"unreadable answer ({exc})" if str(exc) else "unreadable answer")

    def on_message_begin(self) -> None:
        fut = self.fut
        if fut is None or fut.done():
            # bytes nobody asked for: the stream is out of step, so the connection is spent
            self._fail("the server sent an answer nobody asked for")
        self.headers = {}
        self.body = []
        self.headers_done = False
        self.size = 0
        self.inflater = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("utf-8", "surrogateescape").lower()] = value.decode(
            "utf-8", "surrogateescape"
        )

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True
        if self.head_only and self.status >= 200:
            # an answer to HEAD has no body whatever its length says, which the parser cannot
            # know: settle now and retire the connection rather than leave the parser waiting
            self._settle(False)
            return
        headers = self.headers
        if length_over(headers.get("content-length"), self.limit, self.status):
            raise BodyTooLarge  # refused before a byte of it is read
        if "content-encoding" in headers:
            self.inflater = inflater_for(headers["content-encoding"], self.limit)

    def on_body(self, body: bytes) -> None:
        inflater = self.inflater
        if inflater is not None:
            inflater.feed(body)
            return
        self.size += len(body)
        if self.size > self.limit:
            raise BodyTooLarge
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.status < 200:
            return  # an interim answer (103 Early Hints): the real one follows
        self._settle(self.parser.should_keep_alive() and not self.head_only)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        fut = self.fut
        if fut is not None and not fut.done():
            if self.headers_done and self._until_close():
                self._settle(False)
            elif self.pool.closed:
                fut.set_exception(_Failure("the transport was closed"))
            elif exc is not None:
                fut.set_exception(_Failure(_reason(exc)))
            else:
                fut.set_exception(_Failure("the server closed the connection"))
        if self.idle:
            self.pool.drop(self)

    def _until_close(self) -> bool:
        # neither a length nor chunks: the body runs to the end of the connection
        headers = self.headers
        return (
            "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "").lower()
        )

    def _settle(self, reusable: bool) -> None:
        fut = self.fut
        self.fut = None
        self.reusable = reusable
        self.headers_done = False
        body = self.body
        inflater = self.inflater
        if inflater is not None:
            self.inflater = None
            try:
                inflater.finish()
            except BodyUnreadable as exc:
                self.reusable = False
                if fut is not None and not fut.done():
                    fut.set_exception(_Failure(str(exc)))
                return
            body = inflater.chunks
        if fut is not None and not fut.done():
            # the answer travels in the future: bytes after it may not touch what was read
            fut.set_result((self.status, self.headers, body))

    def _fail(self, reason: str | Exception) -> None:
        fut = self.fut
        self.reusable = False
        if fut is not None and not fut.done():
            fut.set_exception(_Failure(reason) if isinstance(reason, str) else reason)
        if self.transport is not None:
            self.transport.abort()


class _Pool:
    """The connections of one event loop: idle stacks per key, a total limit, FIFO waiters."""

    __slots__ = (
        "closed",
        "conns",
        "count",
        "idle",
        "keepalive",
        "limit",
        "loop",
        "sweeper",
        "waiters",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int, keepalive: float) -> None:
        self.loop = loop
        self.limit = limit if limit > 0 else 1 << 62
        self.keepalive = keepalive
        self.idle: dict[_Key, list[_Conn]] = {}
        self.conns: set[_Conn] = set()
        self.count = 0  # connections open or opening, idle or busy: what the limit counts
        self.waiters: deque[tuple[object, asyncio.Future[_Conn | None]]] = deque()
        self.sweeper: asyncio.TimerHandle | None = None
        self.closed = False

    def take(self, key: _Key) -> _Conn | None:
        """The freshest idle connection for `key`, if one is still good."""
        stack = self.idle.get(key)
        if not stack:
            return None
        now = self.loop.time()
        while stack:
            conn = stack.pop()
            conn.idle = False
            if not conn.lost and now - conn.idle_since < self.keepalive:
                return conn
            self.drop(conn)
        return None

    async def acquire(self, key: _Key, ctx: ssl.SSLContext | None) -> _Conn:
        """A connection for `key`: handed over by a finishing sender, or newly opened."""
        if self.count < self.limit:
            self.count += 1
        elif not self._evict_idle():
            fut: asyncio.Future[_Conn | None] = self.loop.create_future()
            self.waiters.append((key, fut))
            try:
                handed = await fut
            except BaseException:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    # granted at the moment this sender gave up: pass it on, do not leak it
                    got = fut.result()
                    if got is None:
                        self._free_slot()
                    else:
                        self.put(got)
                raise
            if handed is not None:
                if not handed.lost:
                    return handed
                self._close(handed)  # closed by the server on the way over: keep its slot
        origin, _, proxy = key
        try:
            if proxy is not None and ctx is not None:
                conn = await open_tunnel(
                    self.loop, proxy, origin.host, origin.port, ctx, lambda: _Conn(self, key)
                )
            else:
                to = origin if proxy is None else proxy
                _, conn = await self.loop.create_connection(
                    lambda: _Conn(self, key),
                    to.host,
                    to.port,
                    ssl=ctx,
                    server_hostname=origin.host if ctx is not None else None,
                )
        except BaseException:
            self._free_slot()
            raise
        if self.closed:
            conn.gone = True
            assert conn.transport is not None
            conn.transport.abort()
            raise _Failure("the transport was closed")
        self.conns.add(conn)
        return conn

    def put(self, conn: _Conn) -> None:
        """Take back a connection whose answer was read in full."""
        if self.closed or conn.lost or not conn.reusable:
            self.drop(conn)
            return
        waiters = self.waiters
        while waiters:
            key, fut = waiters.popleft()
            if fut.done():
                continue
            if key == conn.key:
                fut.set_result(conn)
            else:
                # its slot goes to the longest waiter, who needs a connection elsewhere
                self._close(conn)
                fut.set_result(None)
            return
        conn.idle = True
        conn.idle_since = self.loop.time()
        stack = self.idle.get(conn.key)
        if stack is None:
            self.idle[conn.key] = [conn]
        else:
            stack.append(conn)
        if self.sweeper is None:
            self.sweeper = self.loop.call_at(conn.idle_since + self.keepalive, self._sweep)

    def drop(self, conn: _Conn) -> None:
        """Close a connection and free its slot; safe to call more than once."""
        if conn.gone:
            return
        self._close(conn)
        self._free_slot()

    def _close(self, conn: _Conn) -> None:
        conn.gone = True
        if conn.idle:
            conn.idle = False
            stack = self.idle.get(conn.key)
            if stack is not None and conn in stack:
                stack.remove(conn)
        self.conns.discard(conn)
        if not conn.lost and conn.transport is not None:
            conn.transport.abort()

    def _free_slot(self) -> None:
        waiters = self.waiters
        while waiters:
            _, fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes straight to the longest waiter
                return
        self.count -= 1

    def _evict_idle(self) -> bool:
        # at the limit with idle connections to other places: the oldest one makes room
        oldest: _Conn | None = None
        for stack in self.idle.values():
            if stack and (oldest is None or stack[0].idle_since < oldest.idle_since):
                oldest = stack[0]
        if oldest is None:
            return False
        self._close(oldest)  # its slot is taken over by the caller
        return True

    def _sweep(self) -> None:
        self.sweeper = None
        if self.closed:
            return
        now = self.loop.time()
        due: float | None = None
        for key, stack in list(self.idle.items()):
            while stack and now - stack[0].idle_since >= self.keepalive:
                self.drop(stack[0])
            if stack:
                first = stack[0].idle_since + self.keepalive
                due = first if due is None else min(due, first)
            else:
                del self.idle[key]
        if due is not None:
            self.sweeper = self.loop.call_at(due, self._sweep)

    def close(self) -> None:
        """Close every connection; senders still waiting for one fail."""
        self.closed = True
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        for conn in list(self.conns):
            conn.gone = True
            conn.idle = False
            if not conn.lost and conn.transport is not None:
                if conn.fut is None:
                    conn.transport.close()
                else:
                    conn.transport.abort()
        self.conns.clear()
        self.idle.clear()
        while self.waiters:
            _, fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(_Failure("the transport was closed"))
        self.count = 0


class HttptoolsTransport:
    """Sends requests over pooled keep-alive HTTP/1.1 connections, one attempt per `send`.

    Hand-written: aiohttp's per-request overhead doubled a lookup's client CPU (bench/core.py).

    Connections are pooled per scheme, host, port and TLS context, so integrations with their
    own client certificate (`Request.tls`) never share a connection. Redirects are returned,
    not followed; no cookies are kept; a proxy is used only when the request names one
    (`Request.proxy`, see http/_proxy.py); nothing is ever resent (retries are the
    RetryPolicy's).
    """

    __slots__ = ("_keepalive", "_limit", "_origins", "_pool", "_ssl")

    def __init__(
        self,
        *,
        limit: int = 256,
        keepalive_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._limit = limit
        self._keepalive = keepalive_s
        self._ssl = ssl_context
        self._pool: _Pool | None = None
        # a config has a handful of base URLs: each is split once, not on every request
        self._origins: dict[str, Origin] = {}

    async def send(self, request: Request, timeout_s: float) -> Response:
        """Send `request` and read the whole answer, giving up after `timeout_s` seconds."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        pool = self._pool
        if pool is None or pool.loop is not loop:
            # a pool belongs to the loop it was made in; a gone loop's connections are dropped
            pool = self._pool = _Pool(loop, self._limit, self._keepalive)
        try:
            origin, target = self._locate(request.url)
        except (_Failure, ValueError) as exc:
            raise ConnectError(f"{_where(request)}: {exc}") from None  # nothing was sent
        proxy = request.proxy
        if proxy is not None and origin.scheme == "http":
            request, target = absolute_form(request, origin.scheme, origin.host_line, target)
        data = encode(request, origin, target)
        if origin.scheme == "https":
            ctx = request.tls
            if ctx is None:
                ctx = self._ssl
                if ctx is None:
                    ctx = self._ssl = ssl.create_default_context()
        else:
            ctx = None
        key = (origin, ctx, proxy)
        deadline = loop.time() + timeout_s
        try:
            conn = pool.take(key)
            if conn is None:
                try:
                    async with asyncio.timeout_at(deadline):
                        conn = await pool.acquire(key, ctx)
                except TimeoutError:
                    raise
                except (_Failure, OSError, TunnelError) as exc:
                    # before any byte of the request left: a write cannot have happened
                    why = _reason(exc) if isinstance(exc, OSError) else str(exc)
                    via = f" (through the proxy {proxy.where})" if proxy is not None else ""
                    raise ConnectError(f"{_where(request)}{via}: {why}") from None
            if conn.lost:  # closed while a new connection was being set up
                pool.drop(conn)
                raise ConnectError(f"{_where(request)}: the server closed the connection")
            fut = conn.fut = loop.create_future()
            conn.head_only = request.method == "HEAD"
            conn.limit = request.max_response_bytes
            conn.head_room = _MAX_HEAD
            transport = conn.transport
            assert transport is not None
            if isinstance(data, bytes):
                transport.write(data)
            else:
                transport.writelines(data)
            timer = loop.call_at(deadline, _expire, fut)
            try:
                status, headers, body = await fut
            except BaseException:
                pool.drop(conn)
                raise
            finally:
                timer.cancel()
            pool.put(conn)
            if refused_by_proxy(request, status):
                raise ConnectError(f"{_where(request)}: the proxy refused it: 407 (credentials)")
            content = body[0] if len(body) == 1 else b"".join(body)
        except _Failure as exc:
            raise TransportError(f"{_where(request)}: {exc}") from None
        except _TooLarge as exc:
            raise too_large(request, exc.args[0]) from None
        except TimeoutError:
            raise TimeoutError(f"{_where(request)}: no answer within {timeout_s:g} s") from None
        except (OSError, ValueError) as exc:
            raise TransportError(f"{_where(request)}: {_reason(exc)}") from None
        return Response(status, headers, content, (time.perf_counter() - started) * 1000.0)

    async def close(self) -> None:
        """Close every connection of the running loop."""
        pool, self._pool = self._pool, None
        if pool is not None and pool.loop is asyncio.get_running_loop():
            pool.close()
            # lets the transports finish closing before the loop goes away
            await asyncio.sleep(0)

    def _locate(self, url: str) -> tuple[Origin, str]:
        # "https://" is 8 characters: the first '/' from there on ends the host
        cut = url.find("/", 8)
        base = url if cut < 0 else url[:cut]
        target = "/" if cut < 0 else url[cut:]
        origin = self._origins.get(base)
        if origin is None:
            if "?" in base or "#" in base:
                # a query right after the host: split properly, and cache nothing
                parts = urlsplit(url)
                origin = parse_origin(f"{parts.scheme}://{parts.netloc}")
                rest = url[len(parts.scheme) + 3 + len(parts.netloc) :]
                target = rest if rest.startswith("/") else "/" + rest
            else:
                origin = parse_origin(base)
                if len(self._origins) >= _MAX_ORIGINS:
                    self._origins.clear()
                self._origins[base] = origin
        if "#" in target:
            target = target[: target.index("#")]
        if not (target.isascii() and target.isprintable()) or " " in target:
            target = quote(target, safe=_TARGET_SAFE)
        return origin, target
