"""Loopback servers and a transport for the HTTP core's tests; nothing reaches the internet."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from patchbay.http._httptools import HttptoolsTransport
from patchbay.http._transport import AiohttpTransport
from patchbay.http._types import Transport

Serve = Callable[..., Awaitable[str]]
TransportClass = type[AiohttpTransport] | type[HttptoolsTransport]
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start an aiohttp app on 127.0.0.1 and give its base URL; all are stopped afterwards."""
    servers: list[TestServer] = []

    async def start(app: web.Application, *, tls: ssl.SSLContext | None = None) -> str:
        server = TestServer(app, host="127.0.0.1", scheme="https" if tls else "http")
        await server.start_server(ssl=tls)
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[RawHandler], Awaitable[str]]]:
    """A bare TCP server, for misbehaviour aiohttp.web will not produce."""
    servers: list[asyncio.Server] = []
    handlers: set[asyncio.Task[Any]] = set()

    async def start(handler: RawHandler) -> str:
        async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                await handler(reader, writer)
            finally:
                writer.close()

        server = await asyncio.start_server(guarded, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for task in handlers:
        task.cancel()
    await asyncio.gather(*handlers, return_exceptions=True)
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture(params=[AiohttpTransport, HttptoolsTransport], ids=["aiohttp", "httptools"])
def transport_class(request: pytest.FixtureRequest) -> TransportClass:
    """Each transport in turn: every transport test runs on both."""
    found: TransportClass = request.param
    return found


@pytest.fixture
async def transport(transport_class: TransportClass) -> AsyncIterator[Transport]:
    """A real transport, closed after the test."""
    found = transport_class()
    yield found
    await found.close()


def _bomb(coding: str, size: int) -> bytes:
    """`size` zero bytes compressed in one gzip member or deflate stream (about 1000:1)."""
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "raw": -zlib.MAX_WBITS}
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits[coding])
    zeros = bytes(1 << 20)
    parts = [packer.compress(zeros) for _ in range(size >> 20)]
    parts.append(packer.flush())
    return b"".join(parts)


BOMBS: dict[tuple[str, int], bytes] = {}


def bomb(coding: str, size: int = 256 << 20) -> bytes:
    """A compression bomb, made once per session."""
    found = BOMBS.get((coding, size))
    if found is None:
        found = BOMBS[coding, size] = _bomb(coding, size)
    return found


class Hostile:
    """A raw upstream that misbehaves by path; counts connections and the ones it saw dropped.

    /endless         chunked, never ends           /endless-close  no length, never ends
    /huge-length     announces a terabyte, sends nothing
    /endless-head/many, /endless-head/one   endless headers, or one endless header value
    /bomb/CODING     a 256 MiB compression bomb (gzip, deflate, raw) with its length
    /members         endless empty gzip members    /sized/N[/gzip]  a JSON string of N bytes
    /small           a small JSON answer
    """

    def __init__(self) -> None:
        self.connections = 0
        self.dropped = 0
        self.finished = asyncio.Event()  # set whenever a connection's handler ends

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                path = head.split(b" ", 2)[1].decode()
                await self._answer(path, reader, writer)
        except ConnectionError:
            self.dropped += 1
        finally:
            self.finished.set()

    async def _answer(
        self, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        async def send(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        kind = path.split("/")[1]  # what follows may be anything
        if kind == "small":
            await send(b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"ok":true}')
        elif kind == "endless":
            await send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
            while True:
                await send(chunk)
        elif kind == "endless-close":
            await send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            while True:
                await send(b"y" * 65536)
        elif kind == "endless-head":  # headers that never end, as many or as one
            await send(b"HTTP/1.1 200 OK\r\n")
            line = b"X-Pad: " + b"p" * 1000 + b"\r\n" if "many" in path else b"p" * 65536
            if "many" not in path:
                await send(b"X-Pad: ")
            while True:
                await send(line * 64)
        elif kind == "huge-length":
            await send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n")
            if not await reader.read(1):  # nothing comes: only the client's close ends this
                raise ConnectionResetError
        elif kind == "bomb":
            coding = path.rsplit("/", 1)[1]
            body = bomb(coding)
            name = "gzip" if coding == "gzip" else "deflate"
            await send(
                b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n"
                % (name.encode(), len(body))
            )
            await send(body)
        elif kind == "members":
            await send(
                b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            member = gzip.compress(b"") * 2000
            while True:
                await send(b"%x\r\n%s\r\n" % (len(member), member))
        elif kind == "sized":
            parts = path.split("/")
            body = b'"' + b"z" * (int(parts[2]) - 2) + b'"'  # a JSON string of N bytes
            extra = b""
            if parts[-1] == "gzip":
                body, extra = gzip.compress(body), b"Content-Encoding: gzip\r\n"
            await send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), extra))
            await send(body)
        else:
            await send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")


@pytest.fixture
async def hostile(
    raw_server: Callable[[RawHandler], Awaitable[str]],
) -> tuple[Hostile, str]:
    """A running Hostile upstream and its base URL."""
    server = Hostile()
    return server, await raw_server(server)
