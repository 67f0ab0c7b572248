"""A transport tells a request that never left (ConnectError) from one that may have arrived."""

from __future__ import annotations

import asyncio
import socket

import pytest

from patchbay.http import AiohttpTransport, ConnectError, HttptoolsTransport, Transport
from patchbay.http._types import Request, TransportError


def _post(url: str) -> Request:
    return Request("POST", url, "/payments", "billing", "pay", json={"a": 1}, has_body=True)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(params=[HttptoolsTransport, AiohttpTransport])
def transport(request: pytest.FixtureRequest) -> Transport:
    made: Transport = request.param()
    return made


async def test_a_refused_connection_sent_nothing(transport: Transport) -> None:
    try:
        with pytest.raises(ConnectError):
            await transport.send(_post(f"http://127.0.0.1:{_closed_port()}/payments"), 2.0)
    finally:
        await transport.close()


async def test_a_reset_after_the_request_was_read_may_have_arrived(transport: Transport) -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)  # the request arrived; the answer never leaves
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TransportError) as info:
            await transport.send(_post(f"http://127.0.0.1:{port}/payments"), 2.0)
        assert not isinstance(info.value, ConnectError)
    finally:
        await transport.close()
        server.close()
        await server.wait_closed()
