"""MCP surface, driven by the official SDK's own clients against the example billing API.

Streamable HTTP: the endpoint is mounted in a Starlette app served by uvicorn on loopback, and
reached with `streamable_http_client` + `ClientSession` (the initialize handshake) and with the
high-level `Client`. stdio: `stdio_client` spawns `patchbay mcp -c examples/billing/patchbay.yaml`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import mcp.types as types
import pytest
import uvicorn
from mcp import Client, ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types.version import MODERN_PROTOCOL_VERSIONS
from starlette.applications import Starlette
from starlette.types import ASGIApp

from patchbay import ToolResult, ToolRuntime
from patchbay.gateway import create_app
from patchbay.integrations._mcp import META_CALL_ID, mcp_asgi, tool_result
from patchbay.spec import GatewayAuth, GatewaySpec, parameters_schema
from patchbay.testing import BillingServer

from .example_calls import (
    EXAMPLE_CONFIG,
    LOOKUP_ARGS,
    PAYMENT_ARGS,
    assert_charged_once,
    assert_lookup_heard,
    assert_payment_heard,
)


@pytest.fixture
async def billing(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[BillingServer]:
    async with BillingServer(in_process=True) as srv:
        monkeypatch.setenv("BILLING_URL", srv.url)
        monkeypatch.setenv("BILLING_API_KEY", srv.api_key)
        yield srv


@pytest.fixture
async def runtime(billing: BillingServer) -> AsyncIterator[ToolRuntime]:
    env = {"BILLING_URL": billing.url, "BILLING_API_KEY": billing.api_key}
    async with ToolRuntime.from_file(str(EXAMPLE_CONFIG), env=env) as rt:
        yield rt


@asynccontextmanager
async def uvicorn_serving(app: ASGIApp) -> AsyncIterator[str]:
    """`app` served by uvicorn (lifespan on) on a free loopback port; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def serving(runtime: ToolRuntime, *, stateless: bool = False) -> AsyncIterator[str]:
    """The MCP endpoint alone at /mcp; yields its URL."""
    http = mcp_asgi(runtime, stateless=stateless)
    app = Starlette(routes=[http.route("/mcp")], lifespan=http.lifespan)
    async with uvicorn_serving(app) as base:
        yield f"{base}/mcp"


def llm(result: types.CallToolResult) -> dict[str, Any]:
    """What the model reads; the text and the structured content must say the same."""
    assert len(result.content) == 1
    text = result.content[0]
    assert isinstance(text, types.TextContent)
    assert json.loads(text.text) == result.structured_content
    assert isinstance(result.structured_content, dict)
    assert result.is_error is (result.structured_content["ok"] is False)
    return result.structured_content


async def play(session: ClientSession | Client, **kw: Any) -> str:
    """The example call's two tool calls; returns the confirmation number."""
    assert_lookup_heard(llm(await session.call_tool("lookup_customer_invoices", LOOKUP_ARGS, **kw)))
    return assert_payment_heard(llm(await session.call_tool("create_payment", PAYMENT_ARGS, **kw)))


async def test_streamable_http_session_is_the_call(
    runtime: ToolRuntime, billing: BillingServer
) -> None:
    """A client that names no call: its MCP session is the call, so the payment finds the
    customer the lookup found, and a retried payment charges nothing more."""
    async with (
        serving(runtime) as url,
        streamable_http_client(url) as (read, write),
        ClientSession(read, write) as session,
    ):
        init = await session.initialize()
        assert init.server_info.name == "patchbay"
        confirmation = await play(session)
        again = llm(await session.call_tool("create_payment", PAYMENT_ARGS))
        assert again["result"]["confirmation_number"] == confirmation
    assert_charged_once(await billing.ledger())


async def test_streamable_http_lists_every_tool_with_its_own_schema(runtime: ToolRuntime) -> None:
    async with (
        serving(runtime) as url,
        streamable_http_client(url) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        listed = await session.list_tools()
    by_name = {t.name: t for t in listed.tools}
    assert set(by_name) == set(runtime.tools)
    for name, tool in runtime.tools.items():
        # patchbay's schema as written, not one re-derived from a Python signature.
        assert by_name[name].input_schema == parameters_schema(tool)
        assert by_name[name].description
    assert by_name["get_customer"].annotations is not None
    assert by_name["get_customer"].annotations.read_only_hint is True
    assert by_name["create_payment"].annotations is not None
    assert by_name["create_payment"].annotations.read_only_hint is False


async def test_stateless_endpoint_takes_the_call_from_x_call_id(
    runtime: ToolRuntime, billing: BillingServer
) -> None:
    """Stateless (any replica serves any request): the X-Call-Id header names the call, so two
    separate connections share it; a connection without it is another call."""

    @asynccontextmanager
    async def connect(url: str, headers: dict[str, str]) -> AsyncIterator[ClientSession]:
        async with (
            httpx2.AsyncClient(headers=headers) as http,
            streamable_http_client(url, http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session

    async with serving(runtime, stateless=True) as url:
        async with connect(url, {"X-Call-Id": "pstn-4411"}) as first:
            assert_lookup_heard(llm(await first.call_tool("lookup_customer_invoices", LOOKUP_ARGS)))
        async with connect(url, {}) as stranger:
            refused = await stranger.call_tool("create_payment", PAYMENT_ARGS)
            assert refused.is_error
            assert llm(refused)["error"] == "invalid_arguments"
            assert "not linked to a call" in llm(refused)["message"]
        async with connect(url, {"X-Call-Id": "pstn-4411"}) as second:
            assert_payment_heard(llm(await second.call_tool("create_payment", PAYMENT_ARGS)))
    assert_charged_once(await billing.ledger())


async def test_high_level_client_names_the_call_in_meta(
    runtime: ToolRuntime, billing: BillingServer
) -> None:
    async with serving(runtime, stateless=True) as url, Client(url) as client:
        # The SDK's high-level client speaks the sessionless 2026 protocol: no MCP session
        # could stand for the call, so the call is named on each request.
        assert client.session.protocol_version in MODERN_PROTOCOL_VERSIONS
        await play(client, meta={META_CALL_ID: "pstn-7788"})
    assert_charged_once(await billing.ledger())


async def test_bad_arguments_are_an_error_result_and_reach_no_api(
    runtime: ToolRuntime, billing: BillingServer
) -> None:
    before = (await billing.ledger())["requests"]
    async with (
        serving(runtime) as url,
        streamable_http_client(url) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        bad = await session.call_tool("create_payment", {**PAYMENT_ARGS, "amount": "lots"})
        # No such tool is not a failed tool but a bad request: a JSON-RPC error, as the MCP
        # spec has it, and the session goes on.
        with pytest.raises(MCPError) as unknown:
            await session.call_tool("refund_everything", {})
        assert (await session.call_tool("create_payment", {**PAYMENT_ARGS, "amount": 0})).is_error
    assert bad.is_error
    assert llm(bad)["error"] == "invalid_arguments"
    assert "amount" in llm(bad)["fields"]
    assert unknown.value.code == types.INVALID_PARAMS == -32602
    assert unknown.value.message == "Unknown tool: refund_everything"
    assert (await billing.ledger())["requests"] == before


async def test_mounted_in_the_gateway_behind_its_bearer(
    runtime: ToolRuntime, billing: BillingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`patchbay serve`'s app with the endpoint plugged in: the gateway's bearer check guards
    /mcp, and an authorised client plays the call through it."""
    monkeypatch.setenv("PATCHBAY_GATEWAY_TOKEN", "tok-3f9a1c")
    auth = GatewayAuth(bearer="env:PATCHBAY_GATEWAY_TOKEN")
    config = runtime.config.model_copy(update={"gateway": GatewaySpec(auth=auth)})
    http = mcp_asgi(runtime)
    app = create_app(runtime, config, extra_mounts=[http.route()], extra_lifespan=http.lifespan)
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "curl", "version": "8"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}
    async with uvicorn_serving(app) as base:
        async with httpx2.AsyncClient() as anonymous:
            refused = await anonymous.post(f"{base}/mcp", json=initialize, headers=accept)
        assert refused.status_code == 401
        async with (
            httpx2.AsyncClient(headers={"Authorization": "Bearer tok-3f9a1c"}) as authorised,
            streamable_http_client(f"{base}/mcp", http_client=authorised) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            await play(session)
    assert_charged_once(await billing.ledger())


def _patchbay_mcp(config: Path) -> list[str]:
    """`patchbay mcp -c CONFIG`, as the `patchbay` console script runs it (`patchbay.cli:main`),
    without needing the script installed."""
    run = "import sys; sys.argv[0] = 'patchbay'; from patchbay.cli import main; sys.exit(main())"
    return ["-c", run, "mcp", "-c", str(config)]


async def test_stdio_patchbay_mcp(billing: BillingServer, tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=_patchbay_mcp(EXAMPLE_CONFIG),
        env={"BILLING_URL": billing.url, "BILLING_API_KEY": billing.api_key},
        cwd=tmp_path,
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        listed = await session.list_tools()
        assert {t.name for t in listed.tools} == {
            "get_customer",
            "lookup_customer_invoices",
            "create_payment",
        }
        confirmation = await play(session)
        again = llm(await session.call_tool("create_payment", PAYMENT_ARGS))
        assert again["result"]["confirmation_number"] == confirmation
    assert_charged_once(await billing.ledger())


async def test_a_call_not_linked_is_told_so_not_to_look_the_invoices_up_again(
    runtime: ToolRuntime, billing: BillingServer
) -> None:
    """The sessionless client names no call: the lookup happened, but on a call of its own, so
    the payment's refusal says how to link the calls instead of the rule's "look them up"."""
    async with serving(runtime, stateless=True) as url, Client(url) as client:
        assert_lookup_heard(llm(await client.call_tool("lookup_customer_invoices", LOOKUP_ARGS)))
        refused = llm(await client.call_tool("create_payment", PAYMENT_ARGS))
    assert refused["error"] == "invalid_arguments"
    words = refused["message"]
    assert "not linked to a call" in words and "look the invoices up" not in words
    assert "patchbay/call_id" in words and "X-Call-Id" in words
    assert (await billing.ledger())["charges_by_invoice"] == {}


async def test_unknown_tool_names_over_mcp_share_one_metrics_label(
    runtime: ToolRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names a client makes up do not become label values: /metrics stays the same size."""
    monkeypatch.setenv("PATCHBAY_GATEWAY_TOKEN", "tok-77aa")
    auth = GatewayAuth(bearer="env:PATCHBAY_GATEWAY_TOKEN")
    config = runtime.config.model_copy(update={"gateway": GatewaySpec(auth=auth)})
    http = mcp_asgi(runtime)
    app = create_app(runtime, config, extra_mounts=[http.route()], extra_lifespan=http.lifespan)
    token = {"Authorization": "Bearer tok-77aa"}
    async with (
        uvicorn_serving(app) as base,
        httpx2.AsyncClient(headers=token) as authorised,
        streamable_http_client(f"{base}/mcp", http_client=authorised) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        with pytest.raises(MCPError):
            await session.call_tool("made_up_0", {})
        await authorised.get(f"{base}/metrics")  # the scrape itself is counted from now on
        before = (await authorised.get(f"{base}/metrics")).content
        for i in range(1, 101):
            with pytest.raises(MCPError, match="Unknown tool"):
                await session.call_tool(f"made_up_{i}", {})
        after = (await authorised.get(f"{base}/metrics")).content
    assert b"made_up" not in after
    assert len(after) - len(before) < 200  # only the counts' digits grew


def test_a_result_with_lone_surrogates_still_encodes() -> None:
    from_upstream = ToolResult(ok=True, tool="t", call_id="c", result={"\ud800": "x\udc00"})
    encoded = json.loads(tool_result(from_upstream).model_dump_json(by_alias=True))
    assert encoded["structuredContent"] == {"ok": True, "result": {"\ufffd": "x\ufffd"}}
