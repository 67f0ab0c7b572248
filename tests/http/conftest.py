"""Loopback servers and a transport for the HTTP core's tests; nothing reaches the internet."""

from __future__ import annotations

import asyncio
import ssl
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
