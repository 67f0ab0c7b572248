"""MCP server on the official SDK: every tool over streamable HTTP (in the gateway) and stdio.

The low-level `mcp.server.lowlevel.Server` is used rather than FastMCP/MCPServer so each tool
keeps patchbay's own JSON Schema (FastMCP derives schemas from Python signatures). Every call
goes through `ToolRuntime.execute`, so validation, policies and the result are the same as on
every other surface.

Which phone call a tool call belongs to (so the lookup's customer carries to the payment):
`_meta["patchbay/call_id"]` on the request, else the `X-Call-Id` header, else the MCP session
id (stateful HTTP), else the id the server was built with (stdio: one process, one call).
The tenant is named the same way (`patchbay/tenant`, `X-Tenant`); in the gateway, the
credential of the HTTP request decides it (`SCOPE_TENANT`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from http import HTTPStatus
from typing import Any, NamedTuple, Protocol

import mcp.types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import (
    DEFAULT_MAX_REQUEST_BODY_SIZE,
    TransportSecuritySettings,
)
from mcp.shared.exceptions import MCPError
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from patchbay import __version__
from patchbay.runtime import ToolCall, ToolResult, ToolRuntime
from patchbay.runtime._result import json_safe
from patchbay.spec import CallContext, SchemaFormat, export_tools

__all__ = [
    "HEADER_CALLER",
    "HEADER_CALL_ID",
    "HEADER_TENANT",
    "META_CALLER",
    "META_CALL_ID",
    "META_TENANT",
    "SCOPE_TENANT",
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
# ASGI scope key: set by the gateway to a function from the tenant a request names to the one
# it runs as (the credential's), raising PermissionError for one the credential may not name.
SCOPE_TENANT = "patchbay.tenant"
TenantRule = Callable[[str | None], str | None]

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
        if params.name not in runtime.tools:
            # A protocol error, as the MCP spec has it: the model did not call a tool at all.
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name[:64]}")
        try:
            call = _call_context(runtime, ctx, call_id)
        except PermissionError as exc:
            raise MCPError(types.INVALID_PARAMS, str(exc)) from None
        # A `traceparent` header of the HTTP request (when `_meta` carried none): the parent.
        tracing = runtime.tracing
        http = ctx.request if isinstance(ctx.request, Request) else None
        token = tracing.adopt(http.headers) if tracing is not None and http else None
        try:
            result = await runtime.execute(ToolCall(params.name, params.arguments or {}, call))
        finally:
            if tracing is not None:
                tracing.release(token)
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
    text = result.llm_text()
    structured = result.for_llm()
    if "\ufffd" in text:
        # The text had lone surrogates replaced (or a real U+FFFD): the structure must encode too.
        structured = json_safe(structured)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content=structured,
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
    max_body_bytes: int = DEFAULT_MAX_REQUEST_BODY_SIZE,
) -> McpHttp:
    """The streamable HTTP endpoint for `runtime`; enter `lifespan()` for as long as it serves.

    Stateful (the default) keeps an MCP session per client, so a client that names no call
    still gets one call per session; that needs sticky routing across replicas. Stateless
    serves any request on any replica; clients then name the call (`_meta` or `X-Call-Id`), as
    clients of the sessionless 2026-07-28 protocol (the SDK's `Client`) must in either mode.
    A request that names no call and has no session is a call of its own.
    A body over `max_body_bytes` is refused (413); every refusal is a JSON-RPC error object.
    """
    manager = StreamableHTTPSessionManager(
        app=mcp_server(runtime, name=name),
        stateless=stateless,
        json_response=json_response,
        security_settings=security,
        max_request_body_size=max_body_bytes,
    )

    @asynccontextmanager
    async def lifespan(app: object = None, /) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return McpHttp(_JsonRefusals(StreamableHTTPASGIApp(manager)), lifespan)


class _JsonRefusals:
    """The SDK's plain-text refusals (a body over its limit, a Content-Type, Host or Origin it
    does not take) answered as JSON-RPC error objects, as its other refusals are."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None  # the start of an error answer that is not JSON
        parts: list[bytes] = []

        async def reshape(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and _plain_error(message):
                held = message
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status = int(held["status"])
            body = _json_rpc_error(status, b"".join(parts))
            headers = [
                (k, v)
                for k, v in held.get("headers", [])
                if k.lower() not in (b"content-type", b"content-length")
            ]
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, reshape)


def _plain_error(start: Message) -> bool:
    """Whether a response start is of an error answer whose body is not JSON."""
    if int(start["status"]) < 400:
        return False
    for key, value in start.get("headers", []):
        if key.lower() == b"content-type":
            return not value.lower().startswith(b"application/json")
    return True


def _json_rpc_error(status: int, text: bytes) -> bytes:
    """A JSON-RPC error object (no request id) saying what the plain answer said."""
    message = text.decode("utf-8", "replace").strip()[:200]
    if not message:
        try:
            message = HTTPStatus(status).phrase
        except ValueError:
            message = f"HTTP {status}"
    error = types.JSONRPCError(
        jsonrpc="2.0", id=None, error=types.ErrorData(code=types.INVALID_REQUEST, message=message)
    )
    return error.model_dump_json(by_alias=True, exclude_unset=True).encode()


async def serve_stdio(runtime: ToolRuntime, *, call_id: str | None = None) -> None:
    """Serve MCP on this process's stdin and stdout until the client closes them."""
    server = mcp_server(runtime, call_id=call_id or f"mcp-stdio-{uuid.uuid4().hex}")
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def _call_context(
    runtime: ToolRuntime, ctx: ServerRequestContext[Any], fallback: str | None
) -> CallContext:
    meta: Mapping[str, Any] = ctx.meta or {}
    http = ctx.request if isinstance(ctx.request, Request) else None
    headers: Mapping[str, str] = http.headers if http is not None else {}
    rule: TenantRule | None = http.scope.get(SCOPE_TENANT) if http is not None else None

    def pick(meta_key: str, header: str) -> str | None:
        value = meta.get(meta_key)
        if isinstance(value, str) and value:
            return value
        return headers.get(header) or None

    tenant = pick(META_TENANT, HEADER_TENANT)
    if rule is not None:
        tenant = rule(tenant)
    call_id = pick(META_CALL_ID, HEADER_CALL_ID) or headers.get(MCP_SESSION_ID_HEADER) or fallback
    if call_id is None:
        adhoc = runtime.call_context(None)
        adhoc.tenant = tenant
        return adhoc
    return CallContext(id=call_id, tenant=tenant, caller=pick(META_CALLER, HEADER_CALLER))
