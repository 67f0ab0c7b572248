"""MCP server on the official SDK: every tool over streamable HTTP (in the gateway) and stdio.

The low-level `mcp.server.lowlevel.Server` is used rather than FastMCP/MCPServer so each tool
keeps patchbay's own JSON Schema (FastMCP derives schemas from Python signatures). Every call
goes through `ToolRuntime.execute`, so validation, policies and the result are the same as on
every other surface.

Which phone call a tool call belongs to (so the lookup's customer carries to the payment):
`_meta["patchbay/call_id"]` on the request, else the `X-Call-Id` header, else the MCP session
id (stateful HTTP), else the id the server was built with (stdio: one process, one call).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, NamedTuple, Protocol

import mcp.types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp

from patchbay import __version__
from patchbay.runtime import ToolCall, ToolResult, ToolRuntime
from patchbay.spec import CallContext, SchemaFormat, export_tools

__all__ = [
    "HEADER_CALLER",
    "HEADER_CALL_ID",
    "HEADER_TENANT",
    "META_CALLER",
    "META_CALL_ID",
    "META_TENANT",
    "McpHttp",
    "McpLifespan",
    "mcp_asgi",
    "mcp_server",
    "serve_stdio",
    "tool_result",
]

META_CALL_ID = "patchbay/call_id"
META_TENANT = "patchbay/tenant"
META_CALLER = "patchbay/caller"
HEADER_CALL_ID = "x-call-id"
HEADER_TENANT = "x-tenant"
HEADER_CALLER = "x-caller"

_INSTRUCTIONS = (
    "Tools of a voice agent's business APIs. Each result has `ok`; when it is false, `error` "
    "and `message` say why, and `say` (when present) is a line to speak to the caller."
)


def mcp_server(
    runtime: ToolRuntime, *, name: str = "patchbay", call_id: str | None = None
) -> Server[Any]:
    """A low-level MCP server that lists and runs every tool of `runtime`.

    `call_id` is the phone call assumed when a request names none and has no MCP session.
    """
    # The config is frozen, so the listing is built once.
    listing = types.ListToolsResult(
        tools=[
            types.Tool.model_validate(d)
            for d in export_tools(list(runtime.tools.values()), SchemaFormat.MCP)
        ]
    )

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return listing

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        call = _call_context(runtime, ctx, call_id)
        result = await runtime.execute(ToolCall(params.name, params.arguments or {}, call))
        return tool_result(result)

    return Server(
        name,
        version=__version__,
        instructions=_INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def tool_result(result: ToolResult) -> types.CallToolResult:
    """A patchbay result as an MCP tool result: the model's JSON as text and as structure."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=result.llm_text())],
        structured_content=result.for_llm(),
        is_error=not result.ok,
    )


class McpLifespan(Protocol):
    """Runs the endpoint's sessions; takes (and ignores) the app, as a Starlette lifespan."""

    def __call__(self, app: object = None, /) -> AbstractAsyncContextManager[None]: ...


class McpHttp(NamedTuple):
    """The MCP streamable HTTP endpoint: an ASGI app and the lifespan it needs running.

    In the gateway:
    `create_app(runtime, extra_mounts=[http.route()], extra_lifespan=http.lifespan)`.
    """

    app: ASGIApp
    lifespan: McpLifespan

    def route(self, path: str = "/mcp") -> Route:
        """A Starlette route serving the endpoint at exactly `path` (a Mount would redirect)."""
        return Route(path, endpoint=self.app)


def mcp_asgi(
    runtime: ToolRuntime,
    *,
    stateless: bool = False,
    json_response: bool = False,
    security: TransportSecuritySettings | None = None,
    name: str = "patchbay",
) -> McpHttp:
    """The streamable HTTP endpoint for `runtime`; enter `lifespan()` for as long as it serves.

    Stateful (the default) keeps an MCP session per client, so a client that names no call
    still gets one call per session; that needs sticky routing across replicas. Stateless
    serves any request on any replica; clients then name the call (`_meta` or `X-Call-Id`), as
    clients of the sessionless 2026-07-28 protocol (the SDK's `Client`) must in either mode.
    A request that names no call and has no session is a call of its own.
    """
    manager = StreamableHTTPSessionManager(
        app=mcp_server(runtime, name=name),
        stateless=stateless,
        json_response=json_response,
        security_settings=security,
    )

    @asynccontextmanager
    async def lifespan(app: object = None, /) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return McpHttp(StreamableHTTPASGIApp(manager), lifespan)


async def serve_stdio(runtime: ToolRuntime, *, call_id: str | None = None) -> None:
    """Serve MCP on this process's stdin and stdout until the client closes them."""
    server = mcp_server(runtime, call_id=call_id or f"mcp-stdio-{uuid.uuid4().hex}")
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def _call_context(
    runtime: ToolRuntime, ctx: ServerRequestContext[Any], fallback: str | None
) -> CallContext:
    meta: Mapping[str, Any] = ctx.meta or {}
    headers: Mapping[str, str] = ctx.request.headers if isinstance(ctx.request, Request) else {}

    def pick(meta_key: str, header: str) -> str | None:
        value = meta.get(meta_key)
        if isinstance(value, str) and value:
            return value
        return headers.get(header) or None

    call_id = pick(META_CALL_ID, HEADER_CALL_ID) or headers.get(MCP_SESSION_ID_HEADER) or fallback
    if call_id is None:
        return runtime.call_context(None)
    return CallContext(
        id=call_id,
        tenant=pick(META_TENANT, HEADER_TENANT),
        caller=pick(META_CALLER, HEADER_CALLER),
    )
