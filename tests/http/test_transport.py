"""Both transports against real loopback servers: wire format, pooling, failures, timeouts."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiohttp import web

from patchbay.http._types import Request, Transport, TransportError

KEY = "sk_live_transport_0123456789"
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Serve = Callable[..., Awaitable[str]]


def request(url: str, **kw: Any) -> Request:
    return Request(
        method=kw.pop("method", "GET"),
        url=url,
        path_template=kw.pop("path_template", "/echo"),
        integration="it",
        tool="t",
        **kw,
    )


async def echo(req: web.Request) -> web.Response:
    peer = req.transport.get_extra_info("peername") if req.transport else None
    return web.json_response(
        {
            "method": req.method,
            "path": req.path,
            "query": list(req.query.items()),
            "headers": dict(req.headers),
            "body": await req.text(),
            "peer_port": peer[1] if peer else None,
        },
        headers={"X-Trace": "abc"},
    )


@pytest.fixture
async def echo_url(serve: Serve) -> str:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return await serve(app)


async def test_get_sends_query_and_headers_and_reads_the_answer(
    transport: Transport, echo_url: str
) -> None:
    response = await transport.send(
        request(
            f"{echo_url}/customers/search",
            headers={"X-API-Key": "k1", "X-Other": "v"},
            query=(("phone", "+15551234567"), ("tag", "a"), ("tag", "b")),
        ),
        5.0,
    )
    assert response.status == 200
    seen = response.json()
    assert seen["method"] == "GET"
    assert seen["path"] == "/customers/search"
    assert seen["query"] == [["phone", "+15551234567"], ["tag", "a"], ["tag", "b"]]
    assert seen["headers"]["X-API-Key"] == "k1"
    assert seen["headers"]["X-Other"] == "v"
    assert seen["body"] == ""
    assert "Content-Type" not in seen["headers"]
    assert response.headers["x-trace"] == "abc"  # a plain dict, lower-cased keys
    assert response.header("X-TRACE") == "abc"
    assert response.elapsed_ms > 0


async def test_json_body_is_sent_with_its_content_type(transport: Transport, echo_url: str) -> None:
    body = {"invoice_id": "inv_1", "amount": 1250, "note": "café"}
    response = await transport.send(
        request(f"{echo_url}/payments", method="POST", json=body, has_body=True), 5.0
    )
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["headers"]["Content-Type"] == "application/json"
    assert json.loads(seen["body"]) == body


async def test_a_declared_content_type_is_kept(transport: Transport, echo_url: str) -> None:
    response = await transport.send(
        request(
            f"{echo_url}/x",
            method="POST",
            json={"a": 1},
            has_body=True,
            headers={"content-type": "application/vnd.api+json"},
        ),
        5.0,
    )
    assert response.json()["headers"]["Content-Type"] == "application/vnd.api+json"


async def test_a_json_null_body_is_still_a_body(transport: Transport, echo_url: str) -> None:
    response = await transport.send(
        request(f"{echo_url}/x", method="PUT", json=None, has_body=True), 5.0
    )
    assert response.json()["body"] == "null"


async def test_form_body_is_urlencoded(transport: Transport, echo_url: str) -> None:
    response = await transport.send(
        request(
            f"{echo_url}/token",
            method="POST",
            form=(("grant_type", "client_credentials"), ("scope", "a b&c")),
            has_body=True,
        ),
        5.0,
    )
    seen = response.json()
    assert seen["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert seen["body"] == "grant_type=client_credentials&scope=a+b%26c"


async def test_connections_are_kept_alive_and_reused(transport: Transport, echo_url: str) -> None:
    ports = {
        (await transport.send(request(f"{echo_url}/a"), 5.0)).json()["peer_port"] for _ in range(10)
    }
    assert len(ports) == 1


async def test_redirects_are_returned_not_followed(
    transport: Transport, serve: Serve, echo_url: str
) -> None:
    async def moved(_: web.Request) -> web.Response:
        raise web.HTTPFound(f"{echo_url}/elsewhere")

    app = web.Application()
    app.router.add_get("/moved", moved)
    url = await serve(app)
    response = await transport.send(request(f"{url}/moved", headers={"X-API-Key": "k"}), 5.0)
    assert response.status == 302
    assert response.headers["location"] == f"{echo_url}/elsewhere"


async def test_cookies_are_never_stored(transport: Transport, serve: Serve) -> None:
    async def set_cookie(req: web.Request) -> web.Response:
        response = web.json_response({"cookie": req.headers.get("Cookie")})
        response.set_cookie("session", "tenant-a")
        return response

    app = web.Application()
    app.router.add_get("/c", set_cookie)
    url = await serve(app)
    await transport.send(request(f"{url}/c"), 5.0)
    second = await transport.send(request(f"{url}/c"), 5.0)
    assert second.json() == {"cookie": None}


async def test_a_closed_transport_opens_again_when_used(
    transport: Transport, echo_url: str
) -> None:
    assert (await transport.send(request(f"{echo_url}/a"), 5.0)).status == 200
    await transport.close()
    assert (await transport.send(request(f"{echo_url}/a"), 5.0)).status == 200


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_is_a_transport_error_without_the_query(
    transport: Transport,
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/customers/cus_42"
    with pytest.raises(TransportError) as info:
        await transport.send(
            request(url, query=(("api_key", KEY),), path_template="/customers/{id}"), 5.0
        )
    text = f"{info.value} {info.value!r}"
    assert "/customers/{id}" in text
    assert KEY not in text
    assert "cus_42" not in text  # the filled path may carry caller data
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_reset_is_a_transport_error(transport: Transport, raw_server: Any) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    url = await raw_server(reset)
    with pytest.raises(TransportError):
        await transport.send(request(f"{url}/x", query=(("api_key", KEY),)), 5.0)


async def test_a_truncated_body_is_a_transport_error(transport: Transport, raw_server: Any) -> None:
    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial":')
        await writer.drain()

    url = await raw_server(truncated)
    with pytest.raises(TransportError):
        await transport.send(request(f"{url}/x"), 5.0)


async def _hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(60)


async def _hang_in_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
    await writer.drain()
    await asyncio.sleep(60)


@pytest.mark.parametrize("handler", [_hang, _hang_in_body], ids=["no-answer", "stalled-body"])
async def test_a_hanging_server_is_abandoned_at_the_timeout(
    transport: Transport, raw_server: Any, handler: RawHandler
) -> None:
    url = await raw_server(handler)
    started = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        await transport.send(request(f"{url}/slow", query=(("api_key", KEY),)), 0.3)
    took = time.monotonic() - started
    assert 0.25 <= took < 1.3
    assert not isinstance(info.value, TransportError)
    assert KEY not in f"{info.value} {info.value!r}"


async def test_each_timeout_is_honoured_with_one_transport(
    transport: Transport, raw_server: Any
) -> None:
    url = await raw_server(_hang)
    for timeout in (0.2, 0.5):
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await transport.send(request(f"{url}/slow"), timeout)
        assert timeout - 0.05 <= time.monotonic() - started < timeout + 1.0


def test_one_transport_serves_successive_event_loops(
    transport_class: Callable[..., Transport],
) -> None:
    """A CLI runs one asyncio.run per command; the transport must not keep a dead loop's pool."""

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    transport = transport_class()
    url = f"http://127.0.0.1:{server.server_address[1]}/hello"
    try:
        for _ in range(2):
            assert asyncio.run(transport.send(request(url), 5.0)).body == b"ok"
        asyncio.run(transport.close())
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("char", ["\x0b", "\x0c", "\x1b", "\x00", "\x7f", "\r", "\n", "\x85"])
async def test_a_header_with_a_control_character_never_reaches_the_wire(
    transport: Transport, raw_server: Callable[[RawHandler], Awaitable[str]], char: str
) -> None:
    received: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(65536))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    url = await raw_server(record)
    with pytest.raises(TransportError, match="control character"):
        await transport.send(request(f"{url}/x", headers={"X-Note": f"a{char}b"}), 5.0)
    assert not any(received), "no byte of the request was sent"
    tab = await transport.send(request(f"{url}/x", headers={"X-Note": "a\tb"}), 5.0)
    assert tab.status == 200
