"""The endpoints for any client: /tools, /tools/{name}, /calls, /healthz and mounted apps."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from patchbay.spec import CallContext, SchemaFormat, export_tools

from .gateway_support import StackFactory, bearer, small_config


async def test_a_tool_call_answers_the_result_contract(stack: StackFactory) -> None:
    body = {"arguments": {"text": "hi"}, "call": {"id": "c-1", "tenant": "acme", "caller": "+1"}}
    async with stack(small_config()) as s:
        status, data = await s.post("/tools/echo", body, **bearer())
        failed_status, failed = await s.post("/tools/broken", {"call": {"id": "c-1"}}, **bearer())
    assert status == 200
    assert data["ok"] is True and data["tool"] == "echo" and data["call_id"] == "c-1"
    assert data["result"] == {"text": "hi", "call_id": "c-1", "caller": "+1", "tenant": "acme"}
    assert set(data) == {"ok", "tool", "call_id", "result", "error", "say", "meta"}
    # A tool that fails is still an answer (200): the error is the tool's, not the request's.
    assert failed_status == 200
    assert failed["ok"] is False and failed["error"]["code"] == "upstream_unavailable"
    assert failed["say"] == "Sorry, that system is down right now."


async def test_invalid_arguments_are_the_tools_answer(stack: StackFactory) -> None:
    async with stack(small_config()) as s:
        status, data = await s.post("/tools/slow", {"arguments": {"seconds": 99}}, **bearer())
    assert status == 200
    assert data["ok"] is False and data["error"]["code"] == "invalid_arguments"
    assert "seconds" in data["error"]["fields"]


async def test_tool_schemas_in_every_format(stack: StackFactory) -> None:
    config = small_config()
    async with stack(config) as s:
        for fmt in SchemaFormat:
            status, body = await s.get(f"/tools?format={fmt.value}", **bearer())
            assert status == 200, fmt
            assert json.loads(body) == export_tools(config.tools.values(), fmt, strict=True)
        status, body = await s.get("/tools?format=openai&strict=false", **bearer())
        assert json.loads(body) == export_tools(config.tools.values(), SchemaFormat.OPENAI, False)
        status, body = await s.get("/tools?format=cobol", **bearer())
        assert status == 400 and "openai" in json.loads(body)["error"]["message"]


async def test_call_lifecycle(stack: StackFactory) -> None:
    async with stack(small_config()) as s:
        status, data = await s.post(
            "/calls/life-1/start",
            {"tenant": "acme", "caller": "+15550001111", "state": {"k": "v"}},
            **bearer(),
        )
        assert (status, data) == (200, {"call_id": "life-1", "started": True})
        ctx = s.runtime.call_context(CallContext("life-1", tenant="acme"))
        assert (ctx.tenant, ctx.caller, ctx.state) == ("acme", "+15550001111", {"k": "v"})
        # later tool calls of the call (a call id is unique within its tenant) see what start said
        body = {"arguments": {"text": "t"}, "call": {"id": "life-1", "tenant": "acme"}}
        _, echoed = await s.post("/tools/echo", body, **bearer())
        assert echoed["result"]["tenant"] == "acme" and echoed["result"]["caller"] == "+15550001111"
        status, data = await s.post("/calls/life-1/end?tenant=acme", raw=b"", **bearer())
        assert (status, data) == (200, {"call_id": "life-1", "ended": True})
        assert s.runtime.call_context(CallContext("life-1", tenant="acme")).state == {}
        assert (await s.post("/calls/life-2/start", raw=b""))[0] == 401


@pytest.mark.parametrize(
    "body",
    [{"state": ["not", "an", "object"]}, {"caller": 15550001111}, {"tenant": ["acme"]}],
)
async def test_call_start_refuses_fields_of_the_wrong_type(
    stack: StackFactory, body: dict[str, object]
) -> None:
    async with stack(small_config()) as s:
        status, data = await s.post("/calls/typed-1/start", body, **bearer())
        assert status == 400 and data["error"]["code"] == "bad_request"
        assert next(iter(body)) in data["error"]["message"]
        # nothing was started: the call has no caller or state from the refused body
        ctx = s.runtime.call_context(CallContext("typed-1"))
        assert (ctx.caller, ctx.state) == (None, {})


async def test_healthz_is_open(stack: StackFactory) -> None:
    async with stack(small_config()) as s:
        status, body = await s.get("/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok", "tools": 3})


async def test_mounted_apps_are_guarded_and_their_lifespan_runs(stack: StackFactory) -> None:
    ran: list[str] = []

    async def hello(request: Request) -> Response:
        return JSONResponse({"mounted": True, "path": request.url.path})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ran.append("start")
        yield
        ran.append("stop")

    mcp = Mount("/mcp", routes=[Route("/", hello, methods=["GET", "POST"])])
    async with stack(small_config(), extra_mounts=[mcp], extra_lifespan=lifespan) as s:
        assert ran == ["start"]
        status, body = await s.get("/mcp/", **bearer())
        assert status == 200 and json.loads(body)["mounted"] is True
        status, body = await s.get("/mcp/")
        assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
    assert ran == ["start", "stop"]


async def test_tool_call_paths_the_short_cut_does_not_take_get_the_routers_answers(
    stack: StackFactory,
) -> None:
    body = {"arguments": {"text": "hi"}, "call": {"id": "c-2"}}
    async with stack(small_config()) as s:
        took = await s.post("/tools/echo", body, **bearer())
        unknown = await s.post("/tools/nope", body, **bearer())
        nested = await s.post("/tools/echo/more", body, **bearer())
        empty = await s.post("/retell/", body, **bearer())
        longer = await s.post("/vapi/x", {"message": {}}, **bearer())
        get_status, get_body = await s.get("/vapi", **bearer())
    assert took[0] == 200 and took[1]["result"]["text"] == "hi"
    assert unknown[0] == 404 and unknown[1]["error"]["code"] == "unknown_tool"
    for status, data in (nested, empty, longer):
        assert status == 404 and data["error"]["code"] == "not_found"
    assert get_status == 405 and json.loads(get_body)["error"]["code"] == "method_not_allowed"
