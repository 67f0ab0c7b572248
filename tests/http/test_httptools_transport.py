"""HttptoolsTransport's own wire handling, against real loopback servers (aiohttp.web and raw)."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web

from patchbay.http import HttptoolsTransport
from patchbay.http._types import Request, TransportError

Serve = Callable[..., Awaitable[str]]
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
RawServer = Callable[[RawHandler], Awaitable[str]]
SECRET = "sk_live_never_in_messages_0123456789"


def request(url: str, **kw: Any) -> Request:
    return Request(
        method=kw.pop("method", "GET"),
        url=url,
        path_template=kw.pop("path_template", "/x"),
        integration="it",
        tool="t",
        **kw,
    )


@pytest.fixture
async def transport() -> AsyncIterator[HttptoolsTransport]:
    found = HttptoolsTransport()
    yield found
    await found.close()


class Counting:
    """A raw keep-alive server that answers every request on a connection, and counts."""

    def __init__(self, answer: Callable[[bytes], Awaitable[bytes]]) -> None:
        self.answer = answer
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.closed = asyncio.Event()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                writer.write(await self.answer(head))
                await writer.drain()
        finally:
            self.open -= 1
            self.closed.set()


def ok(body: bytes = b"ok", extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def test_a_chunked_answer_is_read_and_the_connection_kept(
    transport: HttptoolsTransport, raw_server: RawServer
) -> None:
    async def chunked(_: bytes) -> bytes:
        return (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: chunks\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )

    server = Counting(chunked)
    url = await raw_server(server)
    for _ in range(3):
        response = await transport.send(request(f"{url}/x"), 5.0)
        assert (response.status, response.body) == (200, b"hello world")
        assert response.headers["x-kind"] == "chunks"
    assert server.connections == 1


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_compressed_answer_is_decoded(
    transport: HttptoolsTransport, serve: Serve, coding: str
) -> None:
    payload = b'{"invoices": [' + b'{"amount": 1250},' * 200 + b"{}]}"

    async def packed(req: web.Request) -> web.Response:
        assert "Accept-Encoding" not in req.headers  # compression is the server's own choice
        body = gzip.compress(payload) if coding == "gzip" else zlib.compress(payload)
        return web.Response(body=body, headers={"Content-Encoding": coding})

    app = web.Application()
    app.router.add_get("/x", packed)
    url = await serve(app)
    response = await transport.send(request(f"{url}/x"), 5.0)
    assert response.status == 200
    assert response.body == payload


async def test_a_corrupt_compressed_body_is_a_transport_error(
    transport: HttptoolsTransport, raw_server: RawServer
) -> None:
    async def corrupt(_: bytes) -> bytes:
        return ok(gzip.compress(b"x" * 100)[:-12], "Content-Encoding: gzip\r\n")

    url = await raw_server(Counting(corrupt))
    with pytest.raises(TransportError, match="compressed"):
        await transport.send(request(f"{url}/x"), 5.0)


async def test_after_connection_close_the_next_request_uses_a_new_connection(
    transport: HttptoolsTransport, raw_server: RawServer
) -> None:
    connections = 0

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ok(f"conn-{connections}".encode(), "Connection: close\r\n"))
        await writer.drain()
        # the connection is left open: the client must not reuse it on the header's word alone

    url = await raw_server(once)
    first = await transport.send(request(f"{url}/x"), 5.0)
    second = await transport.send(request(f"{url}/x"), 5.0)
    assert (first.body, second.body) == (b"conn-1", b"conn-2")


@pytest.mark.parametrize("version", ["1.0", "1.1"])
async def test_a_body_that_runs_to_the_close_is_read_in_full(
    transport: HttptoolsTransport, raw_server: RawServer, version: str
) -> None:
    body = b"no length here, " * 500

    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/{version} 200 OK\r\nContent-Type: text/plain\r\n\r\n".encode())
        for start in range(0, len(body), 1000):
            writer.write(body[start : start + 1000])
            await writer.drain()
        writer.close()

    url = await raw_server(until_close)
    for _ in range(2):  # the second one needs a new connection
        response = await transport.send(request(f"{url}/x"), 5.0)
        assert (response.status, response.body) == (200, body)


async def test_an_idle_connection_the_server_closed_is_not_used(
    transport: HttptoolsTransport, raw_server: RawServer
) -> None:
    served = asyncio.Event()
    connections = 0

    async def one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ok(b"fine"))  # keep-alive by every header, and yet closed right after
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        served.set()

    url = await raw_server(one_then_close)
    assert (await transport.send(request(f"{url}/x"), 5.0)).body == b"fine"
    await served.wait()
    served.clear()
    await asyncio.sleep(0.1)  # lets the client's loop see the close
    assert (await transport.send(request(f"{url}/x"), 5.0)).body == b"fine"
    assert connections == 2


async def test_the_pool_limit_holds_and_every_sender_is_served(raw_server: RawServer) -> None:
    async def slow(_: bytes) -> bytes:
        await asyncio.sleep(0.05)
        return ok()

    server = Counting(slow)
    url = await raw_server(server)
    transport = HttptoolsTransport(limit=2)
    try:
        answers = await asyncio.gather(
            *(transport.send(request(f"{url}/x"), 10.0) for _ in range(10))
        )
    finally:
        await transport.close()
    assert [a.body for a in answers] == [b"ok"] * 10
    assert server.most_open <= 2


async def test_one_limit_serves_several_hosts_in_turn(raw_server: RawServer) -> None:
    # at the limit, an idle connection to one host is closed to make room for another
    urls = [await raw_server(Counting(lambda _: _answer_ok())) for _ in range(3)]
    transport = HttptoolsTransport(limit=1)
    try:
        for _ in range(2):
            answers = await asyncio.gather(
                *(transport.send(request(f"{u}/x"), 10.0) for u in urls * 3)
            )
            assert [a.body for a in answers] == [b"ok"] * 9
    finally:
        await transport.close()


async def _answer_ok() -> bytes:
    return ok()


def _router(hung: asyncio.Event) -> Callable[[bytes], Awaitable[bytes]]:
    async def answer(head: bytes) -> bytes:
        if head.startswith(b"GET /hang "):
            hung.set()
            await asyncio.sleep(60)
        return ok()

    return answer


async def test_a_cancelled_send_gives_back_its_slot(raw_server: RawServer) -> None:
    hung = asyncio.Event()
    url = await raw_server(Counting(_router(hung)))
    transport = HttptoolsTransport(limit=1)
    try:
        for _ in range(20):
            hung.clear()
            stuck = asyncio.create_task(transport.send(request(f"{url}/hang"), 30.0))
            await hung.wait()
            # a second sender queued for the only slot, cancelled too
            queued = asyncio.create_task(transport.send(request(f"{url}/ok"), 30.0))
            await asyncio.sleep(0)
            queued.cancel()
            stuck.cancel()
            for task in (stuck, queued):
                with pytest.raises(asyncio.CancelledError):
                    await task
        assert (await transport.send(request(f"{url}/ok"), 5.0)).body == b"ok"
    finally:
        await transport.close()


async def test_waiting_too_long_for_a_slot_is_a_timeout(raw_server: RawServer) -> None:
    hung = asyncio.Event()
    url = await raw_server(Counting(_router(hung)))
    transport = HttptoolsTransport(limit=1)
    stuck = asyncio.create_task(transport.send(request(f"{url}/hang"), 30.0))
    try:
        await hung.wait()
        with pytest.raises(TimeoutError, match=r"no answer within 0\.2 s"):
            await transport.send(request(f"{url}/ok", query=(("key", SECRET),)), 0.2)
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        assert (await transport.send(request(f"{url}/ok"), 5.0)).body == b"ok"
    finally:
        stuck.cancel()
        await transport.close()


async def test_a_timed_out_connection_is_not_reused(
    transport: HttptoolsTransport, raw_server: RawServer
) -> None:
    requests = 0

    async def late(head: bytes) -> bytes:
        nonlocal requests
        requests += 1
        if requests == 1:
            await asyncio.sleep(0.5)  # answers after the client gave up: must never be read
            return ok(b"stale")
        return ok(b"fresh")

    server = Counting(late)
    url = await raw_server(server)
    with pytest.raises(TimeoutError):
        await transport.send(request(f"{url}/x"), 0.1)
    assert (await transport.send(request(f"{url}/x"), 5.0)).body == b"fresh"
    assert server.connections == 2


@pytest.mark.parametrize("bad", ["\r", "\n", "\0", "\r\nX-Injected: yes"])
async def test_a_header_with_cr_lf_or_nul_is_refused(
    transport: HttptoolsTransport, raw_server: RawServer, bad: str
) -> None:
    server = Counting(lambda _: _answer_ok())
    url = await raw_server(server)
    with pytest.raises(TransportError, match="X-Evil") as info:
        await transport.send(request(f"{url}/x", headers={"X-Evil": f"{SECRET}{bad}"}), 5.0)
    assert SECRET not in f"{info.value} {info.value!r}"
    with pytest.raises(TransportError):
        await transport.send(request(f"{url}/x", headers={f"X-Evil{bad}": "v"}), 5.0)
    assert server.connections == 0


async def test_query_values_round_trip_exactly(transport: HttptoolsTransport, serve: Serve) -> None:
    values = [" ", "+", "&", "=", "#", "/", "é", "%20", "a b+c&d=e#f/g?h é", ""]
    query = (*((f"k{i}", value) for i, value in enumerate(values)), ("key é&=", "v"))

    async def parsed(req: web.Request) -> web.Response:
        return web.json_response(
            {
                "yarl": list(req.query.items()),
                "stdlib": parse_qsl(req.rel_url.raw_query_string, keep_blank_values=True),
            }
        )

    app = web.Application()
    app.router.add_get("/x", parsed)
    url = await serve(app)
    seen = (await transport.send(request(f"{url}/x", query=query), 5.0)).json()
    expected = [list(pair) for pair in query]
    assert seen["yarl"] == expected
    assert seen["stdlib"] == expected


async def test_a_query_in_the_url_is_kept(transport: HttptoolsTransport, serve: Serve) -> None:
    async def parsed(req: web.Request) -> web.Response:
        return web.json_response(list(req.query.items()))

    app = web.Application()
    app.router.add_get("/x", parsed)
    url = await serve(app)
    seen = (await transport.send(request(f"{url}/x?a=1#frag", query=(("b", "2"),)), 5.0)).json()
    assert seen == [["a", "1"], ["b", "2"]]


async def test_default_headers_and_the_host(transport: HttptoolsTransport, serve: Serve) -> None:
    async def headers(req: web.Request) -> web.Response:
        return web.json_response(dict(req.headers))

    app = web.Application()
    app.router.add_get("/x", headers)
    url = await serve(app)
    seen = (await transport.send(request(f"{url}/x"), 5.0)).json()
    assert seen["Host"] == url.removeprefix("http://")
    assert seen["Accept"] == "*/*"
    assert seen["User-Agent"].startswith("patchbay/")
    mine = {"accept": "application/json", "user-agent": "mine/1", "Content-Length": "99"}
    seen = (await transport.send(request(f"{url}/x", headers=mine), 5.0)).json()
    assert (seen["Accept"], seen["User-Agent"]) == ("application/json", "mine/1")
    assert "Content-Length" not in seen  # framing is the transport's, never the caller's


async def test_a_megabyte_arriving_in_small_pieces(
    transport: HttptoolsTransport, raw_server: RawServer
) -> None:
    body = os.urandom(1 << 20)

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        for start in range(0, len(body), 1500):
            writer.write(body[start : start + 1500])
            await writer.drain()
        await reader.read()

    url = await raw_server(trickle)
    response = await transport.send(request(f"{url}/x"), 30.0)
    assert response.body == body


async def test_a_megabyte_request_body_is_sent(transport: HttptoolsTransport, serve: Serve) -> None:
    async def size(req: web.Request) -> web.Response:
        return web.json_response({"n": len(await req.read())})

    app = web.Application(client_max_size=4 << 20)
    app.router.add_post("/x", size)
    url = await serve(app)
    text = "é" * (1 << 18)
    sent = request(f"{url}/x", method="POST", json={"text": text}, has_body=True)
    response = await transport.send(sent, 5.0)
    assert response.json() == {"n": len(json.dumps({"text": text}, separators=(",", ":")))}


async def test_a_truncated_body_fails_and_its_connection_is_not_reused(
    transport: HttptoolsTransport, raw_server: RawServer
) -> None:
    connections = 0

    async def truncate_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        mine = connections
        while True:
            await reader.readuntil(b"\r\n\r\n")
            if mine == 1:
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial":')
                await writer.drain()
                writer.close()
                return
            writer.write(ok(b"whole"))
            await writer.drain()

    url = await raw_server(truncate_first)
    with pytest.raises(TransportError, match="closed") as info:
        await transport.send(request(f"{url}/x", query=(("key", SECRET),)), 5.0)
    assert SECRET not in f"{info.value} {info.value!r}"
    assert (await transport.send(request(f"{url}/x"), 5.0)).body == b"whole"
    assert connections == 2


async def test_an_unreadable_answer_is_a_transport_error(
    transport: HttptoolsTransport, raw_server: RawServer
) -> None:
    async def garbage(_: bytes) -> bytes:
        return b"SMTP ready\r\n\r\n"

    url = await raw_server(Counting(garbage))
    with pytest.raises(TransportError, match="unreadable"):
        await transport.send(request(f"{url}/x"), 5.0)


async def test_an_interim_answer_is_skipped(
    transport: HttptoolsTransport, raw_server: RawServer
) -> None:
    async def hints(_: bytes) -> bytes:
        return b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + ok(b"final")

    url = await raw_server(Counting(hints))
    for _ in range(2):
        response = await transport.send(request(f"{url}/x"), 5.0)
        assert (response.status, response.body) == (200, b"final")
        assert "link" not in response.headers


async def test_head_answers_carry_no_body(
    transport: HttptoolsTransport, raw_server: RawServer
) -> None:
    async def head(request_head: bytes) -> bytes:
        if request_head.startswith(b"HEAD "):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
        return ok(b"got")

    server = Counting(head)
    url = await raw_server(server)
    response = await transport.send(request(f"{url}/x", method="HEAD"), 5.0)
    assert (response.status, response.body, response.headers["content-length"]) == (
        200,
        b"",
        "1234",
    )
    assert (await transport.send(request(f"{url}/x"), 5.0)).body == b"got"


async def test_idle_connections_expire_after_keepalive(raw_server: RawServer) -> None:
    server = Counting(lambda _: _answer_ok())
    url = await raw_server(server)
    transport = HttptoolsTransport(keepalive_s=0.5)
    try:
        await transport.send(request(f"{url}/x"), 5.0)
        await transport.send(request(f"{url}/x"), 5.0)
        assert server.connections == 1
        await asyncio.sleep(1.0)
        await transport.send(request(f"{url}/x"), 5.0)
        assert server.connections == 2
    finally:
        await transport.close()


async def test_close_closes_idle_connections(
    transport: HttptoolsTransport, raw_server: RawServer
) -> None:
    server = Counting(lambda _: _answer_ok())
    url = await raw_server(server)
    await transport.send(request(f"{url}/x"), 5.0)
    assert server.open == 1
    await transport.close()
    await asyncio.wait_for(server.closed.wait(), 5.0)
    assert server.open == 0


async def test_an_unknown_scheme_is_a_transport_error(transport: HttptoolsTransport) -> None:
    with pytest.raises(TransportError, match="scheme"):
        await transport.send(request("ftp://127.0.0.1/x"), 5.0)
