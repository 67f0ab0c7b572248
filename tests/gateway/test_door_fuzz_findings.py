"""What a fuzzer found at the door: raw bytes in query strings, /mcp bodies past the gateway's
limit and the SDK's plain-text refusals, call state at /calls/{id}/start that no store can keep.

Every answer is JSON below 500. uvicorn's HTTP parsers refuse a raw non-UTF-8 byte in the
request line themselves, but other ASGI servers and proxies hand it on, so those requests are
sent to the ASGI app in-process; everything else goes to a gateway on a loopback port.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from patchbay.gateway import create_app, sign_retell
from patchbay.integrations import mcp_asgi
from patchbay.runtime import ToolRuntime
from patchbay.spec import Config
from patchbay.testing import BillingServer

from .gateway_support import (
    CALLER,
    RETELL_KEY,
    TOKEN,
    StackFactory,
    bearer,
    example_config,
    running,
    small_config,
)
from .surfaces import retell_body

AUTH = (b"authorization", f"Bearer {TOKEN}".encode())
MCP_HEADERS = {
    "Authorization": f"Bearer {TOKEN}",
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
}
HELLO = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "fuzz-findings", "version": "1"},
    },
}


def _json_answer(status: int, ctype: str, body: bytes) -> Any:
    """The decoded body of a well-formed JSON answer below 500 (asserted)."""
    assert status < 500, (status, body[:200])
    assert ctype.startswith("application/json"), (status, ctype, body[:200])
    return json.loads(body.decode("utf-8"))


async def _asgi(
    app: Any,
    method: str,
    path: str,
    query: bytes,
    headers: Sequence[tuple[bytes, bytes]] = (),
    body: bytes = b"",
) -> tuple[int, str, bytes]:
    """One request straight into the ASGI app: (status, content-type, body)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    done = asyncio.Event()
    sent = False
    start: dict[str, Any] = {}
    parts: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    try:
        await asyncio.wait_for(app(scope, receive, send), 20)
    finally:
        done.set()
    ctype = dict(start.get("headers", [])).get(b"content-type", b"").decode("latin-1")
    return start["status"], ctype, b"".join(parts)


@asynccontextmanager
async def _gateway_app(config: Config, **mcp_kw: Any) -> AsyncIterator[Any]:
    """The gateway's ASGI app with MCP at /mcp, its sessions running."""
    async with ToolRuntime(config, sinks=[]) as rt:
        http = mcp_asgi(rt, **mcp_kw)
        app = create_app(rt, config, extra_mounts=[http.route()], extra_lifespan=http.lifespan)
        async with http.lifespan():
            yield app


@asynccontextmanager
async def _mcp_gateway(config: Config, **mcp_kw: Any) -> AsyncIterator[str]:
    """The gateway with MCP at /mcp on a loopback port: its base URL."""
    async with ToolRuntime(config, sinks=[]) as rt:
        http = mcp_asgi(rt, **mcp_kw)
        app = create_app(rt, config, extra_mounts=[http.route()], extra_lifespan=http.lifespan)
        async with running(app) as url:
            yield url


RAW_QUERIES = [
    ("GET", "/tools", b"format=\xff", ()),
    ("GET", "/tools", b"format=\xff", (AUTH,)),
    ("GET", "/tools", b"strict=\xff&format=mcp", (AUTH,)),
    ("GET", "/nowhere", b"x=\xff", (AUTH,)),
    ("GET", "/metrics", b"x=\xff", ()),
    ("POST", "/tools/echo", b"tenant=\xff", (AUTH,)),
    ("POST", "/tools/echo", b"tenant=\xff", ()),
    ("POST", "/calls/c-1/start", b"tenant=\xff", (AUTH,)),
    ("POST", "/calls/c-1/end", b"tenant=\xfe\xff", (AUTH,)),
    ("POST", "/vapi", b"tenant=\xff", ()),
    ("POST", "/elevenlabs/echo", b"call_id=\xff", ()),
    ("POST", "/mcp", b"x=\xff", ()),
]


@pytest.mark.parametrize(("method", "path", "query", "headers"), RAW_QUERIES)
async def test_a_raw_non_utf8_query_is_answered_in_json(
    secrets_env: None,
    method: str,
    path: str,
    query: bytes,
    headers: Sequence[tuple[bytes, bytes]],
) -> None:
    body = b'{"arguments": {"text": "hi"}}' if method == "POST" else b""
    hdrs = [(b"content-type", b"application/json"), *headers]
    async with _gateway_app(small_config()) as app:
        status, ctype, raw = await _asgi(app, method, path, query, hdrs, body)
    _json_answer(status, ctype, raw)


async def test_query_text_is_read_as_utf8_with_bad_bytes_replaced(secrets_env: None) -> None:
    async with _gateway_app(small_config()) as app:
        status, ctype, raw = await _asgi(app, "GET", "/tools", b"format=caf\xc3\xa9\xff", [AUTH])
        data = _json_answer(status, ctype, raw)
        assert status == 400 and "caf\u00e9\ufffd" in data["error"]["message"], data
        # An MCP request with a broken query reaches the MCP server, which answers it.
        hdrs = [AUTH, *((k.lower().encode(), v.encode()) for k, v in MCP_HEADERS.items())]
        status, ctype, raw = await _asgi(
            app, "POST", "/mcp", b"x=\xff", hdrs, json.dumps(HELLO).encode()
        )
        assert status == 200, raw[:200]


async def test_mcp_bodies_over_max_body_bytes_get_the_gateways_413(secrets_env: None) -> None:
    config = small_config(max_body_bytes=64 * 1024)
    async with _mcp_gateway(config) as url, aiohttp.ClientSession() as http:
        # Over the gateway's limit but under the MCP SDK's own (4 MiB): refused at the door.
        for size in (100_000, 5_000_000):
            body = json.dumps({**HELLO, "pad": "x" * size}).encode()
            async with http.post(url + "/mcp", data=body, headers=MCP_HEADERS) as answer:
                data = _json_answer(answer.status, answer.content_type, await answer.read())
            assert answer.status == 413, data
            assert data["error"]["code"] == "payload_too_large", data
        # Within the limit it is served.
        async with http.post(url + "/mcp", json=HELLO, headers=MCP_HEADERS) as answer:
            assert answer.status == 200, await answer.read()


async def test_mcp_refuses_a_huge_declared_length_before_reading_the_body(
    secrets_env: None,
) -> None:
    async with _mcp_gateway(small_config()) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        head = (
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in MCP_HEADERS.items())
            + "Content-Length: 99999999999\r\n\r\n"
        )
        writer.write(head.encode() + b'{"jsonrpc":')  # and never the rest
        await writer.drain()
        answer = await reader.readuntil(b"\r\n\r\n")
        lines = answer.decode("latin-1").lower().split("\r\n")
        length = next(int(x.split(":")[1]) for x in lines if x.startswith("content-length:"))
        body = await reader.readexactly(length)
        writer.close()
    assert lines[0].startswith("http/1.1 413"), lines
    assert "content-type: application/json" in lines
    assert json.loads(body)["error"]["code"] == "payload_too_large"


async def test_the_mcp_sdks_own_refusals_are_json_rpc_errors(secrets_env: None) -> None:
    # The SDK's limit below the gateway's: its own 413 (plain text from the SDK) reaches out.
    config = small_config(max_body_bytes=1_000_000)
    async with (
        _mcp_gateway(config, max_body_bytes=4096) as url,
        aiohttp.ClientSession() as http,
    ):
        cases: list[tuple[str, dict[str, str], bytes]] = [
            (
                "over the sdk's limit",
                MCP_HEADERS,
                json.dumps({**HELLO, "pad": "x" * 8000}).encode(),
            ),
            (
                "plain text",
                {**MCP_HEADERS, "Content-Type": "text/plain"},
                json.dumps(HELLO).encode(),
            ),
            (
                "no content type",
                {k: v for k, v in MCP_HEADERS.items() if k != "Content-Type"},
                b"{}",
            ),
            ("broken json", MCP_HEADERS, b'{"jsonrpc": "2.0", '),
            ("deep json", MCP_HEADERS, b"[" * 50_000 + b"]" * 50_000),
            ("lone surrogate", MCP_HEADERS, b'{"jsonrpc":"2.0","id":1,"method":"\\ud800"}'),
            ("not utf-8", MCP_HEADERS, b'{"jsonrpc":"2.0","id":1,"method":"\xff"}'),
            ("not an object", MCP_HEADERS, b"[1, 2]"),
            ("empty", MCP_HEADERS, b""),
        ]
        for label, headers, body in cases:
            async with http.post(url + "/mcp", data=body, headers=headers) as answer:
                data = _json_answer(answer.status, answer.content_type, await answer.read())
            assert 400 <= answer.status < 500, (label, answer.status, data)
            assert data["jsonrpc"] == "2.0" and data["id"] is None, (label, data)
            error = data["error"]
            assert isinstance(error["code"], int) and error["message"], (label, data)


BAD_STATES: list[tuple[str, bytes, str]] = [
    ("lone surrogate value", b'{"state": {"k": "\\udfff"}}', "not valid"),
    ("lone surrogate key", b'{"state": {"\\ud800": {}}}', "not valid"),
    ("nested too deep", b'{"state": ' + b'{"a": ' * 100 + b"1" + b"}" * 100 + b"}", "deep"),
    ("too large", json.dumps({"state": {"notes": "x" * 100_000}}).encode(), "bytes"),
    ("caller not text", b'{"caller": "+1555\\udfff"}', "caller"),
    ("tenant not text", b'{"tenant": "\\udfff"}', "tenant"),
]


@pytest.mark.parametrize(("label", "raw", "says"), BAD_STATES, ids=[b[0] for b in BAD_STATES])
async def test_call_start_refuses_state_no_store_can_keep(
    stack: StackFactory, billing: BillingServer, label: str, raw: bytes, says: str
) -> None:
    async with stack(example_config(billing.url, max_body_bytes=1_000_000)) as s:
        status, data = await s.post("/calls/bad-1/start", raw=raw, **bearer())
        assert status == 400 and data["error"]["code"] == "bad_request", data
        message = data["error"]["message"]
        assert says in message and ("state" in message or says in ("caller", "tenant")), data
        # Refused whole: the call is not started, and its tools still answer.
        body = retell_body("lookup_customer_invoices", {"phone": CALLER}, "bad-1")
        signed = {"X-Retell-Signature": sign_retell(body, RETELL_KEY)}
        async with s.session.post(
            s.url + "/retell/lookup_customer_invoices", data=body, headers=signed
        ) as answer:
            result = _json_answer(answer.status, answer.content_type, await answer.read())
        assert answer.status == 200 and result["ok"] is True, result


async def test_call_start_keeps_good_state_for_the_calls_tools(
    stack: StackFactory, billing: BillingServer
) -> None:
    async with stack(example_config(billing.url)) as s:
        state = {"customer_id": "cus_8F2kLq", "open_invoice_amount": 24700, "tags": ["vip"]}
        status, data = await s.post("/calls/good-1/start", {"state": state}, **bearer())
        assert status == 200 and data == {"call_id": "good-1", "started": True}, data
        assert s.runtime.call_context("good-1").state["customer_id"] == "cus_8F2kLq"
