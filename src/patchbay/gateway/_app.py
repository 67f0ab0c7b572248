"""The gateway as one ASGI app: tool calls over HTTP for any client and the hosted platforms."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from patchbay._errors import ConfigError
from patchbay.gateway._auth import Credentials
from patchbay.gateway._elevenlabs import elevenlabs_call
from patchbay.gateway._http import (
    DoorError,
    Surface,
    arguments_object,
    dumps,
    error_body,
    json_response,
    mapping,
    parse_object,
    read_body,
    refuse,
    text_or_none,
)
from patchbay.gateway._retell import retell_call
from patchbay.gateway._vapi import answer_vapi
from patchbay.http import SecretResolver
from patchbay.observe._metrics import METRICS_CONTENT_TYPE, PrometheusSink
from patchbay.runtime import ToolCall, ToolResult, ToolRuntime
from patchbay.spec import CallContext, Config, SchemaFormat, export_tools

__all__ = ["Gateway", "create_app"]

log = logging.getLogger("patchbay.gateway")

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


class Gateway:
    """The state every endpoint shares: runtime, credentials, limits, metrics."""

    def __init__(
        self,
        runtime: ToolRuntime,
        config: Config,
        credentials: Credentials,
        metrics: PrometheusSink,
    ) -> None:
        self.runtime = runtime
        self.config = config
        self.credentials = credentials
        self.metrics = metrics
        self.max_body = config.gateway.max_body_bytes
        self._schemas: dict[tuple[str, bool], bytes] = {}
        self.requests = Counter(
            "patchbay_gateway_requests",
            "Gateway requests by surface and HTTP status.",
            ["surface", "status"],
            registry=metrics.registry,
        )
        self.latency = Histogram(
            "patchbay_gateway_request_seconds",
            "Time from a request's arrival to its answer, by surface.",
            ["surface"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=metrics.registry,
        )
        self._children: dict[tuple[str, int], Any] = {}

    async def admit(self, surface: Surface, request: Request, body: bytes = b"") -> None:
        """Refuse (DoorError) a caller the config does not let in."""
        if not self.credentials.loaded:
            await self.credentials.load()
        self.credentials.check(surface, request.headers, body)

    def answer(self, surface: Surface, data: Any, started: float, status: int = 200) -> Response:
        """A JSON answer, counted."""
        self._count(surface, status, started)
        return json_response(data, status)

    def refuse(
        self, surface: Surface, request: Request, err: DoorError, started: float
    ) -> Response:
        """A door error, logged and counted."""
        self._count(surface, err.status, started)
        return refuse(surface, request, err)

    def failed(self, surface: Surface, request: Request, started: float) -> Response:
        """A 500 for a bug of ours, in the surface's shape, so its caller can still parse it."""
        log.exception("gateway error on %s %s", request.method, request.url.path)
        self._count(surface, 500, started)
        return json_response(error_body(surface, "internal", "The gateway failed."), 500)

    def _count(self, surface: Surface, status: int, started: float) -> None:
        key = (surface.value, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(surface.value, str(status))
        child.inc()
        self.latency.labels(surface.value).observe(time.perf_counter() - started)

    def schemas(self, fmt: SchemaFormat, strict: bool) -> bytes:
        """Every tool's schema in an LLM format, encoded once (the tools never change)."""
        key = (fmt.value, strict)
        found = self._schemas.get(key)
        if found is None:
            tools = export_tools(self.config.tools.values(), fmt, strict=strict)
            found = self._schemas[key] = dumps(tools)
        return found

    def tool_names(self, name: str) -> None:
        """Refuse a tool name the config does not have (404)."""
        if name not in self.runtime.tools:
            raise DoorError(404, "unknown_tool", f"There is no tool named {name}.")


def _tenant(request: Request) -> str | None:
    return request.query_params.get("tenant") if request.scope.get("query_string") else None


def _call(data: Any, tenant: str | None) -> CallContext | None:
    call = mapping(data)
    call_id = text_or_none(call.get("id"))
    if call_id is None:
        return None
    return CallContext(
        id=call_id,
        tenant=text_or_none(call.get("tenant")) or tenant,
        caller=text_or_none(call.get("caller")),
    )


def _llm_answer(result: ToolResult) -> dict[str, Any]:
    return result.for_llm()


def _routes(gw: Gateway) -> list[BaseRoute]:
    rt = gw.runtime

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok", "tools": len(rt.tools)})

    async def metrics(request: Request) -> Response:
        started = time.perf_counter()
        try:
            await gw.admit(Surface.API, request)
        except DoorError as err:
            return gw.refuse(Surface.API, request, err, started)
        return Response(gw.metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    async def list_tools(request: Request) -> Response:
        started = time.perf_counter()
        try:
            await gw.admit(Surface.API, request)
            raw = request.query_params.get("format", SchemaFormat.OPENAI.value)
            try:
                fmt = SchemaFormat(raw)
            except ValueError:
                known = ", ".join(f.value for f in SchemaFormat)
                raise DoorError(
                    400, "bad_request", f"Unknown format {raw!r}; use {known}."
                ) from None
            strict = request.query_params.get("strict", "true").lower() not in ("0", "false", "no")
            try:
                body = gw.schemas(fmt, strict)
            except ConfigError as exc:
                raise DoorError(400, "bad_request", str(exc)) from None
        except DoorError as err:
            return gw.refuse(Surface.API, request, err, started)
        return Response(body, media_type="application/json")

    async def call_tool(request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["name"]
        try:
            await gw.admit(Surface.API, request)
            gw.tool_names(name)
            body = parse_object(await read_body(request, gw.max_body))
            arguments = arguments_object(body.get("arguments"), "arguments")
            ctx = _call(body.get("call"), _tenant(request))
        except DoorError as err:
            return gw.refuse(Surface.API, request, err, started)
        result = await rt.execute(ToolCall(name, arguments, rt.call_context(ctx)))
        return gw.answer(Surface.API, result.to_dict(), started)

    async def vapi(request: Request) -> Response:
        started = time.perf_counter()
        try:
            await gw.admit(Surface.VAPI, request)
            body = parse_object(await read_body(request, gw.max_body))
            message = body.get("message")
            if not isinstance(message, dict):
                raise DoorError(400, "bad_request", "The body has no message object.")
            data = await answer_vapi(rt, message, _tenant(request))
        except DoorError as err:
            return gw.refuse(Surface.VAPI, request, err, started)
        except Exception:
            return gw.failed(Surface.VAPI, request, started)
        return gw.answer(Surface.VAPI, data, started)

    async def retell(request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["name"]
        try:
            raw = await read_body(request, gw.max_body)
            await gw.admit(Surface.RETELL, request, raw)
            gw.tool_names(name)
            body = parse_object(raw)
            query = request.query_params if request.scope.get("query_string") else {}
            arguments, ctx = retell_call(name, body, query, request.headers, _tenant(request))
        except DoorError as err:
            return gw.refuse(Surface.RETELL, request, err, started)
        result = await rt.execute(ToolCall(name, arguments, rt.call_context(ctx)))
        return gw.answer(Surface.RETELL, _llm_answer(result), started)

    async def elevenlabs(request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["name"]
        try:
            await gw.admit(Surface.ELEVENLABS, request)
            gw.tool_names(name)
            body = parse_object(await read_body(request, gw.max_body))
            query = request.query_params if request.scope.get("query_string") else {}
            params = rt.tools[name].parameters
            arguments, ctx = elevenlabs_call(params, body, query, request.headers, _tenant(request))
        except DoorError as err:
            return gw.refuse(Surface.ELEVENLABS, request, err, started)
        result = await rt.execute(ToolCall(name, arguments, rt.call_context(ctx)))
        return gw.answer(Surface.ELEVENLABS, _llm_answer(result), started)

    async def start_call(request: Request) -> Response:
        started = time.perf_counter()
        call_id = request.path_params["call_id"]
        try:
            await gw.admit(Surface.API, request)
            raw = await read_body(request, gw.max_body)
            body = parse_object(raw) if raw.strip() else {}
            ctx = CallContext(
                id=call_id,
                tenant=text_or_none(body.get("tenant")) or _tenant(request),
                caller=text_or_none(body.get("caller")),
                state=dict(mapping(body.get("state"))),
            )
        except DoorError as err:
            return gw.refuse(Surface.API, request, err, started)
        starter = getattr(rt, "start_call", None)
        if starter is not None:
            await starter(ctx)
        else:
            rt.call_context(ctx)
        return gw.answer(Surface.API, {"call_id": call_id, "started": True}, started)

    async def end_call(request: Request) -> Response:
        started = time.perf_counter()
        call_id = request.path_params["call_id"]
        try:
            await gw.admit(Surface.API, request)
        except DoorError as err:
            return gw.refuse(Surface.API, request, err, started)
        await rt.end_call(call_id)
        return gw.answer(Surface.API, {"call_id": call_id, "ended": True}, started)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/tools", list_tools, methods=["GET"]),
        Route("/tools/{name}", call_tool, methods=["POST"]),
        Route("/vapi", vapi, methods=["POST"]),
        Route("/retell/{name}", retell, methods=["POST"]),
        Route("/elevenlabs/{name}", elevenlabs, methods=["POST"]),
        Route("/calls/{call_id}/start", start_call, methods=["POST"]),
        Route("/calls/{call_id}/end", end_call, methods=["POST"]),
    ]


class _GuardMounts:
    """Bearer-checks requests to mounted apps (e.g. /mcp), which cannot check for themselves."""

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...], gateway: Gateway) -> None:
        self.app = app
        self.prefixes = prefixes
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.prefixes and scope["path"].startswith(self.prefixes):
            creds = self.gateway.credentials
            try:
                if not creds.loaded:
                    await creds.load()
                creds.check(Surface.API, Headers(scope=scope))
            except DoorError as err:
                request = Request(scope, receive)
                await refuse(Surface.API, request, err)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    if status == 405:
        body = error_body(Surface.API, "method_not_allowed", f"{request.method} is not allowed.")
    else:
        body = error_body(Surface.API, "not_found", f"Nothing at {request.url.path}.")
    return json_response(body, status)


async def _server_error(request: Request, exc: Exception) -> Response:
    return json_response(error_body(Surface.API, "internal", "The gateway failed."), 500)


def _prefix(route: BaseRoute) -> str | None:
    path = getattr(route, "path", None)
    return path.rstrip("/") or None if isinstance(path, str) else None


def create_app(
    runtime: ToolRuntime,
    config: Config | None = None,
    secrets: SecretResolver | None = None,
    *,
    extra_mounts: Sequence[BaseRoute] = (),
    extra_lifespan: Lifespan | None = None,
    metrics: PrometheusSink | None = None,
    clock_ms: Callable[[], int] | None = None,
    close_runtime: bool = False,
) -> Starlette:
    """The gateway's ASGI app for `runtime`, authenticating callers as `config.gateway` says.

    `secrets` resolves the gateway's secret references (default: a resolver rooted at the
    config's directory). `extra_mounts` adds routes (the MCP server at /mcp), which the gateway
    guards with its bearer check; `extra_lifespan` runs inside the app's lifespan for them.
    A `PrometheusSink` is attached to the runtime unless one is passed in. With
    `close_runtime`, the app's shutdown closes the runtime once calls in flight have finished.
    """
    cfg = config if config is not None else runtime.config
    resolver = secrets if secrets is not None else SecretResolver(base_dir=cfg.base_dir)
    creds_kw: dict[str, Any] = {} if clock_ms is None else {"clock_ms": clock_ms}
    credentials = Credentials(cfg.gateway.auth, resolver, **creds_kw)
    if metrics is None:
        metrics = PrometheusSink()
        runtime.emitter.add(metrics)
    gw = Gateway(runtime, cfg, credentials, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await credentials.load()  # a missing secret stops the start, not the first call
            if not credentials.configured:
                log.warning("gateway.auth opens no way in: every caller will be refused")
            if extra_lifespan is None:
                yield
            else:
                async with extra_lifespan(app):
                    yield
        finally:
            if close_runtime:
                # uvicorn runs this after in-flight requests end; background writes drain here.
                await runtime.close()

    prefixes = tuple(p for p in (_prefix(r) for r in extra_mounts) if p)
    app = Starlette(
        routes=[*_routes(gw), *extra_mounts],
        middleware=[Middleware(_GuardMounts, prefixes=prefixes, gateway=gw)],
        exception_handlers={404: _not_found, 405: _not_found, 500: _server_error},
        lifespan=lifespan,
    )
    app.state.gateway = gw
    return app
