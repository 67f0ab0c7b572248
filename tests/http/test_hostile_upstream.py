"""Pathological answers from the upstream: each gets its proper error code, never `internal`.

A real loopback server sends the bytes; a real runtime (default transport) turns them into a
tool result, which must always encode as JSON.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from patchbay import ToolRuntime
from patchbay._errors import UpstreamUnavailable
from patchbay.http import Response, Transport
from patchbay.runtime import ToolResult
from patchbay.spec import load_config_text

from .conftest import Serve

DEEP = b"[" * 200_000 + b"]" * 200_000
ANSWERS: dict[str, tuple[int, bytes, dict[str, str]]] = {
    "deep": (200, DEEP, {}),
    "deep-object": (200, b'{"a":' * 100_000 + b"1" + b"}" * 100_000, {}),
    "deep-404": (404, DEEP, {}),
    "deep-500": (500, DEEP, {}),
    "fairly-deep": (200, b'{"data":' + b"[" * 500 + b"]" * 500 + b"}", {}),
    "nested-60": (200, b'{"data":' + b'{"a":' * 59 + b'{"secret": 1}' + b"}" * 59 + b"}", {}),
    "long-int": (200, b'{"data": ' + b"7" * 100_000 + b"}", {}),
    "long-int-404": (404, b'{"code": ' + b"7" * 100_000 + b"}", {}),
    "big-int": (200, b'{"data": ' + b"7" * 4000 + b"}", {}),
    "huge-float": (200, b'{"data": 1e999}', {}),
    "nan": (200, b'{"data": NaN}', {}),
    "bad-utf8": (200, b'{"data": "caf\xe9"}', {}),
    "encoded-surrogate": (200, b'{"data": "\xed\xa0\x80"}', {}),
    "lone-surrogate": (200, b'{"data": "a\\ud800b", "\\udc00": 1}', {}),
    "not-json": (200, b"<html>oops</html>", {}),
    "superscript-retry": (429, b"{}", {"Retry-After": "\u00b2"}),
    "huge-retry": (429, b"{}", {"Retry-After": "9" * 400}),
    "far-retry": (429, b"{}", {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}),
    "zone-retry": (429, b"{}", {"Retry-After": "Mon, 01 Jan 2020 00:00:00 +" + "9" * 20}),
    "negative-retry": (429, b"{}", {"Retry-After": "-5"}),
}

CONFIG = """
version: 1
integrations:
  up:
    base_url: %s
    retry: {attempts: 2, backoff_s: 0.01, max_backoff_s: 0.01}
tools:
  fetch:
    integration: up
    description: Fetch one thing.
    parameters: {kind: {type: string}}
    request: {method: GET, path: "/{kind}"}
    response: {root: data, strip: [secret]}
    budget_s: 10
"""


@pytest.fixture
async def runtime(serve: Serve) -> AsyncIterator[ToolRuntime]:
    async def answer(request: web.Request) -> web.Response:
        status, body, headers = ANSWERS[request.match_info["kind"]]
        return web.Response(status=status, body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/{kind}", answer)
    config = load_config_text(CONFIG % await serve(app), env={})
    async with ToolRuntime(config, sinks=[]) as found:
        yield found


async def call(runtime: ToolRuntime, kind: str) -> ToolResult:
    result = await runtime.call_tool("fetch", {"kind": kind}, "c-1")
    assert json.loads(result.to_json())["tool"] == "fetch"  # always encodes
    json.loads(result.llm_text())
    return result


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("deep", "upstream_unavailable"),
        ("deep-object", "upstream_unavailable"),
        ("deep-404", "not_found"),
        ("deep-500", "upstream_unavailable"),
        ("fairly-deep", "upstream_unavailable"),  # msgspec reads it; walking it would not
        ("long-int", "upstream_unavailable"),
        ("long-int-404", "not_found"),
        ("bad-utf8", "upstream_unavailable"),
        ("encoded-surrogate", "upstream_unavailable"),
        ("not-json", "upstream_unavailable"),
        ("superscript-retry", "rate_limited"),
        ("huge-retry", "rate_limited"),
        ("far-retry", "rate_limited"),
        ("zone-retry", "rate_limited"),
        ("negative-retry", "rate_limited"),
    ],
)
async def test_a_malformed_answer_gets_its_proper_code(
    runtime: ToolRuntime, kind: str, code: str
) -> None:
    result = await call(runtime, kind)
    assert result.error is not None, result.to_dict()
    assert result.error.code == code, result.to_dict()
    assert "Traceback" not in result.error.message and "{" not in result.error.message


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("big-int", int("7" * 4000)),
        ("huge-float", None),  # JSON has no infinity: the LLM gets null
        ("nan", None),
        ("lone-surrogate", "a\ufffdb"),
    ],
)
async def test_an_odd_but_readable_answer_is_read(
    runtime: ToolRuntime, kind: str, data: object
) -> None:
    result = await call(runtime, kind)
    assert result.ok, result.to_dict()
    assert json.loads(result.to_json())["result"] == data


async def test_an_answer_nested_sixty_deep_is_read_and_transformed(runtime: ToolRuntime) -> None:
    result = await call(runtime, "nested-60")
    assert result.ok, result.to_dict()
    inner = result.result
    for _ in range(59):
        assert isinstance(inner, dict)
        inner = inner["a"]
    assert inner == {}  # `strip` reached the bottom


@pytest.mark.parametrize(
    ("body", "readable"),
    [
        (b"[" * 64 + b"]" * 64, True),
        (b"[" * 65 + b"]" * 65, False),
        (b'{"a":' * 64 + b"1" + b"}" * 64, True),
        (b'{"a":' * 65 + b"1" + b"}" * 65, False),
        (b"[" + b"{}," * 500 + b"{}]", True),  # many brackets, little depth
        (b'["]]]]]",' + b"[" * 63 + b"]" * 63 + b"]", True),  # brackets inside strings
        (b'["[[[[[",' + b"[" * 64 + b"]" * 64 + b"]", False),
    ],
)
def test_json_nested_past_sixty_four_levels_is_unreadable(body: bytes, readable: bool) -> None:
    if readable:
        assert Response(200, {}, body).json() is not None
    else:
        with pytest.raises(UpstreamUnavailable):
            Response(200, {}, body).json()


PATHS_CONFIG = """
version: 1
integrations:
  up: {base_url: "%s/api", retry: {attempts: 1}}
tools:
  get_customer:
    integration: up
    description: Fetch a customer.
    parameters: {customer_id: {type: string}}
    request: {method: GET, path: "/customers/{customer_id}"}
  get_invoice:
    integration: up
    description: Fetch a customer's invoice.
    parameters: {customer_id: {type: string}, invoice_id: {type: string}}
    request: {method: GET, path: "/customers/{customer_id}/invoices/{invoice_id}"}
"""


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("get_customer", {"customer_id": ".."}),
        ("get_customer", {"customer_id": "%2E%2E"}),
        ("get_customer", {"customer_id": "."}),
        ("get_invoice", {"customer_id": "..", "invoice_id": "x"}),
        ("get_invoice", {"customer_id": "c", "invoice_id": "%2e%2e"}),
    ],
)
async def test_a_dot_segment_argument_sends_nothing_on_either_transport(
    serve: Serve, transport: Transport, tool: str, args: dict[str, str]
) -> None:
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    config = load_config_text(PATHS_CONFIG % await serve(app), env={})
    async with ToolRuntime(config, sinks=[], transport=transport) as rt:
        result = await rt.call_tool(tool, args, "c-1")
    assert result.error is not None and result.error.code == "invalid_arguments"
    assert seen == []
