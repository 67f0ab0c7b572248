"""Loopback servers and a transport for the HTTP core's tests; nothing reaches the internet."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from patchbay.http._transport import AiohttpTransport

Serve = Callable[..., Awaitable[str]]


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
async def transport() -> AsyncIterator[AiohttpTransport]:
    """A real aiohttp transport, closed after the test."""
    found = AiohttpTransport()
    yield found
    await found.close()
