"""A handler's paths: only declared operations, one segment per value, no dot segments, no query.

Against a real loopback server that records what reaches it: a refused path sends nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from patchbay import ToolRuntime
from patchbay.spec import load_config_text

CONFIG = """
version: 1
integrations:
  api:
    base_url: %s/v1
    retry: {attempts: 1}
    operations:
      - {method: GET, path: "/customers/{customer_id}"}
      - {method: GET, path: "/customers/{customer_id}/invoices/{invoice_id}"}
      - {method: GET, path: /customers/search}
tools:
  concrete:
    integration: api
    description: Calls whatever concrete path it is given.
    parameters: {path: {type: string}}
    handler: handler_paths_tools:concrete
  templated:
    integration: api
    description: Calls a template with the values it is given.
    parameters: {customer_id: {type: string}, invoice_id: {type: string}}
    handler: handler_paths_tools:templated
  keyed:
    integration: api
    description: Sends an idempotency key it is given.
    parameters: {key: {type: string}}
    handler: handler_paths_tools:keyed
"""


# Written into the test's folder and imported by the config, as a project's handlers are.
HANDLERS = """
async def concrete(ctx, path):
    return await ctx.client.get(path)


async def templated(ctx, customer_id, invoice_id=""):
    if invoice_id:
        return await ctx.client.get(
            "/customers/{customer_id}/invoices/{invoice_id}",
            path_params={"customer_id": customer_id, "invoice_id": invoice_id},
        )
    params = {"customer_id": customer_id}
    return await ctx.client.get("/customers/{customer_id}", path_params=params)


async def keyed(ctx, key):
    return await ctx.client.get("/customers/search", params={"q": "x"}, idempotency_key=key)
"""


@pytest.fixture
async def seen_and_runtime(tmp_path: Path) -> AsyncIterator[tuple[list[str], ToolRuntime]]:
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.json_response({"path": request.raw_path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    (tmp_path / "handler_paths_tools.py").write_text(HANDLERS)
    config = load_config_text(CONFIG % base, base_dir=tmp_path, env={})
    runtime = ToolRuntime(config, sinks=[])
    try:
        yield seen, runtime
    finally:
        await runtime.close()
        await server.close()


@pytest.mark.parametrize(
    "path",
    [
        "/customers/..",
        "/customers/%2e%2e",
        "/customers/%2E%2e",
        "/customers/.%2E",
        "/customers/%252e%252e",
        "/customers/x/invoices/..",
        "/customers/a%2F..%2Fb",
        "/customers/%2e%2e/invoices/x",
    ],
)
async def test_a_concrete_path_with_a_dot_segment_is_refused(
    seen_and_runtime: tuple[list[str], ToolRuntime], path: str
) -> None:
    seen, runtime = seen_and_runtime
    result = await runtime.call_tool("concrete", {"path": path}, "c-1")
    assert result.error is not None, result.to_dict()
    assert result.error.code == "invalid_arguments"
    assert seen == []


@pytest.mark.parametrize(
    "path", ["/customers/cus_1?b=1", "/customers/search?q=x", "/customers/x#y", "/customers/a\\b"]
)
async def test_a_concrete_path_with_a_query_is_refused_with_words_for_the_developer(
    seen_and_runtime: tuple[list[str], ToolRuntime], path: str
) -> None:
    seen, runtime = seen_and_runtime
    result = await runtime.call_tool("concrete", {"path": path}, "c-1")
    assert result.error is not None
    assert result.error.code == "internal"
    assert "params=" in result.error.message
    assert "cus_1" not in result.error.message  # the path itself is never echoed
    assert seen == []


@pytest.mark.parametrize("path", ["/admin", "/customers", "/customers/x/invoices", "/v1/x"])
async def test_a_path_no_operation_declares_is_refused(
    seen_and_runtime: tuple[list[str], ToolRuntime], path: str
) -> None:
    seen, runtime = seen_and_runtime
    result = await runtime.call_tool("concrete", {"path": path}, "c-1")
    assert result.error is not None
    assert result.error.code == "internal"
    assert seen == []


@pytest.mark.parametrize(
    "path", ["/customers/cus_1", "/customers/a.b", "/customers/...", "/customers/x/invoices/i.1"]
)
async def test_a_concrete_path_matching_a_declared_operation_is_sent_as_it_is(
    seen_and_runtime: tuple[list[str], ToolRuntime], path: str
) -> None:
    seen, runtime = seen_and_runtime
    result = await runtime.call_tool("concrete", {"path": path}, "c-1")
    assert result.ok, result.to_dict()
    assert seen == [f"/v1{path}"]


@pytest.mark.parametrize(
    ("customer_id", "invoice_id", "field"),
    [
        ("..", "", "customer_id"),
        ("%2e%2E", "", "customer_id"),
        ("x", "..", "invoice_id"),
        ("..", "inv_1", "customer_id"),
    ],
)
async def test_a_path_param_that_is_a_dot_segment_is_refused_by_name(
    seen_and_runtime: tuple[list[str], ToolRuntime], customer_id: str, invoice_id: str, field: str
) -> None:
    seen, runtime = seen_and_runtime
    args = {"customer_id": customer_id, "invoice_id": invoice_id}
    result = await runtime.call_tool("templated", args, "c-1")
    assert result.error is not None
    assert result.error.code == "invalid_arguments"
    assert field in result.error.fields
    assert seen == []


async def test_path_params_stay_one_segment(
    seen_and_runtime: tuple[list[str], ToolRuntime],
) -> None:
    seen, runtime = seen_and_runtime
    result = await runtime.call_tool("templated", {"customer_id": "a/b?c", "invoice_id": ""}, "c")
    assert result.ok, result.to_dict()
    assert seen == ["/v1/customers/a%2Fb%3Fc"]


@pytest.mark.parametrize("key", ["k\x0bv", "k\x0cv", "k\x1bv", "k\r\nX-Evil: 1", "k\x7f"])
async def test_a_handler_idempotency_key_with_control_characters_is_refused(
    seen_and_runtime: tuple[list[str], ToolRuntime], key: str
) -> None:
    seen, runtime = seen_and_runtime
    result = await runtime.call_tool("keyed", {"key": key}, "c-1")
    assert result.error is not None
    assert result.error.code == "invalid_arguments"
    assert seen == []
