"""The gateway as one ASGI app: tool calls over HTTP for any client and the hosted platforms."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, cast

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from patchbay._errors import ConfigError
from patchbay.gateway._auth import Caller, Credentials, retell_signature_shaped
from patchbay.gateway._dashboard import dashboard_routes
from patchbay.gateway._elevenlabs import elevenlabs_call
from patchbay.gateway._events import StreamSettings, event_routes
from patchbay.gateway._http import (
    JSON,
    BodyBudget,
    DoorError,
    Surface,
    api_arguments,
    dumps,
    error_body,
    json_response,
    lifecycle_fields,
    mapping,
    parse_object,
    query_params,
    read_body,
    refuse,
    request_path,
    text_or_none,
)
from patchbay.gateway._retell import retell_call
from patchbay.gateway._trace import continued
from patchbay.gateway._vapi import answer_vapi
from patchbay.gateway._vapi_control import VapiControl
from patchbay.gateway._webhooks import webhook_routes
from patchbay.http import SecretResolver, build_resolver
from patchbay.integrations._mcp import HEADER_TENANT, SCOPE_TENANT
from patchbay.observe._metrics import METRICS_CONTENT_TYPE, PrometheusSink
from patchbay.runtime import ToolCall, ToolRuntime
from patchbay.runtime._logs import log_exception
from patchbay.spec import CallContext, Config, SchemaFormat, export_tools

__all__ = ["Gateway", "Lifespan", "create_app"]

log = logging.getLogger("patchbay.gateway")

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]

# Bodies read before their sender is verified (Retell's signature covers the body), all requests
# together: real ones are a few KiB, and stalled senders must not hold max_body_bytes each.
UNVERIFIED_BODY_BYTES = 4 * 1024 * 1024


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
        self.tracing = getattr(runtime, "tracing", None)  # None: the runtime does not trace
        auth = config.gateway.auth
        keys = [auth.retell_api_key, *(t.retell_api_key for t in auth.tenants.values())]
        self.signs_retell = any(keys)
        self.unverified = BodyBudget(max(UNVERIFIED_BODY_BYTES, 4 * self.max_body))
        self.vapi_control = VapiControl(runtime)  # Vapi calls' events to their controlUrl
        self.event_streams = StreamSettings()  # GET /calls/{id}/events: keep-alive interval
        self._schemas: dict[tuple[str, bool], bytes] = {}
        self.requests = metrics.counter(
            "patchbay_gateway_requests",
            "Gateway requests by surface and HTTP status.",
            ["surface", "status"],
        )
        self.latency = metrics.histogram(
            "patchbay_gateway_request_seconds",
            "Time from a request's arrival to its answer, by surface.",
            ["surface"],
            (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )

    async def admit(self, surface: Surface, request: Request, body: bytes = b"") -> Caller:
        """Who the request comes in as; refuse (DoorError) a caller the config does not let in."""
        if not self.credentials.loaded:
            await self.credentials.load()
        return self.credentials.check(surface, request.headers, body)

    async def handle(
        self, surface: Surface, request: Request, work: Callable[[], Awaitable[Any]]
    ) -> Response:
        """Run an endpoint's work: its JSON (or Response) answer, a door error, or a 500.

        Every outcome is counted, and shaped for the surface's caller, who can always parse it.
        """
        started = time.perf_counter()
        if self.tracing is not None:  # a caller's traceparent: the parent of its tool calls
            work = functools.partial(continued, self.tracing, request.headers, work)
        try:
            data = await work()
        except DoorError as err:
            self._count(surface, err.status, started)
            return refuse(surface, request, err)
        except ClientDisconnect:
            # Gone before its request arrived whole (or closed for being too slow): no one to
            # answer and nothing failed here. 499 as nginx counts it.
            self._count(surface, 499, started)
            return Response(status_code=499)
        except Exception as exc:
            log_exception(log, exc, "gateway error on %s %s", request.method, request_path(request))
            self._count(surface, 500, started)
            return json_response(error_body(surface, "internal", "The gateway failed."), 500)
        response = data if isinstance(data, Response) else json_response(data)
        self._count(surface, response.status_code, started)
        return response

    def _count(self, surface: Surface, status: int, started: float) -> None:
        self.requests.inc(surface.value, str(status))
        self.latency.observe(time.perf_counter() - started, surface.value)

    def schemas(self, fmt: SchemaFormat, strict: bool) -> bytes:
        """Every tool's schema in an LLM format, encoded once (the tools never change)."""
        key = (fmt.value, strict)
        found = self._schemas.get(key)
        if found is None:
            tools = export_tools(self.config.tools.values(), fmt, strict=strict)
            found = self._schemas[key] = dumps(tools)
        return found

    def require_tool(self, name: str) -> None:
        """Refuse a tool name the config does not have (404)."""
        if name not in self.runtime.tools:
            raise DoorError(404, "unknown_tool", f"There is no tool named {name[:64]}.")


def _tenant(request: Request) -> str | None:
    return query_params(request).get("tenant")


def _call(data: Any, tenant: str | None) -> CallContext | None:
    call = mapping(data)
    call_id = text_or_none(call.get("id"))
    if call_id is None:
        return None
    return CallContext(id=call_id, tenant=tenant, caller=text_or_none(call.get("caller")))


def _context(
    rt: ToolRuntime, found: CallContext | None, tenant: str | None, who: tuple[str, str]
) -> CallContext:
    """The live context of the call a request names, or a one-off one: both run as `tenant`,
    marked with the platform and credential `who` let in (for the audit trail)."""
    ctx = rt.call_context(found)
    if found is None:
        ctx.tenant = tenant
    ctx.platform, ctx.credential = who
    return ctx


def _who(surface: Surface, caller: Caller) -> tuple[str, str]:
    """(platform, the config name of the credential the request came in with); no values."""
    if not caller.authenticated:
        return surface.value, "open"
    owner = "gateway.auth" if caller.tenant is None else f"gateway.auth.tenants.{caller.tenant}"
    return surface.value, owner


def _query(request: Request) -> Mapping[str, str]:
    return query_params(request)


def _routes(gw: Gateway) -> list[BaseRoute]:
    rt = gw.runtime

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok", "tools": len(rt.tools)})

    async def metrics(request: Request) -> Response:
        async def work() -> Response:
            caller = await gw.admit(Surface.API, request)
            if caller.tenant is not None:
                raise DoorError(
                    403,
                    "forbidden",
                    "The metrics cover every tenant: only the operator may read them.",
                )
            return Response(gw.metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

        return await gw.handle(Surface.API, request, work)

    async def list_tools(request: Request) -> Response:
        async def work() -> Response:
            await gw.admit(Surface.API, request)
            query = query_params(request)
            raw = query.get("format", SchemaFormat.OPENAI.value)
            try:
                fmt = SchemaFormat(raw)
            except ValueError:
                known = ", ".join(f.value for f in SchemaFormat)
                message = f"Unknown format {raw!r}; use {known}."
                raise DoorError(400, "bad_request", message) from None
            strict = query.get("strict", "true").lower() not in ("0", "false", "no")
            try:
                return Response(gw.schemas(fmt, strict), media_type=JSON)
            except ConfigError as exc:
                raise DoorError(400, "bad_request", str(exc)) from None

        return await gw.handle(Surface.API, request, work)

    async def call_tool(request: Request) -> Response:
        async def work() -> Any:
            name = request.path_params["name"]
            caller = await gw.admit(Surface.API, request)
            gw.require_tool(name)
            body = parse_object(await read_body(request, gw.max_body))
            arguments = api_arguments(body)
            named = text_or_none(mapping(body.get("call")).get("tenant"))
            tenant = gw.credentials.tenant(caller, named, _tenant(request))
            who = _who(Surface.API, caller)
            ctx = _context(rt, _call(body.get("call"), tenant), tenant, who)
            result = await rt.execute(ToolCall(name, arguments, ctx))
            return result.to_dict()

        return await gw.handle(Surface.API, request, work)

    async def vapi(request: Request) -> Response:
        async def work() -> Any:
            caller = await gw.admit(Surface.VAPI, request)
            tenant = gw.credentials.tenant(caller, _tenant(request))
            body = parse_object(await read_body(request, gw.max_body))
            message = body.get("message")
            if not isinstance(message, dict):
                raise DoorError(400, "bad_request", "The body has no message object.")
            limit = gw.config.gateway.max_tool_calls_per_message
            who = _who(Surface.VAPI, caller)
            control = gw.vapi_control
            return await answer_vapi(rt, message, tenant, max_calls=limit, who=who, control=control)

        return await gw.handle(Surface.VAPI, request, work)

    async def retell(request: Request) -> Response:
        async def work() -> Any:
            name = request.path_params["name"]
            if gw.signs_retell:
                # The signature covers the raw body, so the body is read before the check: only
                # a well-formed header gets that far, and unverified bodies share one budget.
                signature = request.headers.get("x-retell-signature")
                if not signature:
                    raise DoorError(401, "unauthorized", "X-Retell-Signature is missing.")
                if not retell_signature_shaped(signature):
                    raise DoorError(401, "unauthorized", "X-Retell-Signature is wrong or stale.")
                raw = await read_body(request, gw.max_body, gw.unverified)
                caller = await gw.admit(Surface.RETELL, request, raw)
            else:
                caller = await gw.admit(Surface.RETELL, request)
                raw = await read_body(request, gw.max_body)
            tenant = gw.credentials.tenant(caller, _tenant(request))
            gw.require_tool(name)
            body = parse_object(raw)
            args, found = retell_call(name, body, _query(request), request.headers, tenant)
            ctx = _context(rt, found, tenant, _who(Surface.RETELL, caller))
            result = await rt.execute(ToolCall(name, args, ctx))
            return result.for_llm()

        return await gw.handle(Surface.RETELL, request, work)

    async def elevenlabs(request: Request) -> Response:
        async def work() -> Any:
            name = request.path_params["name"]
            caller = await gw.admit(Surface.ELEVENLABS, request)
            tenant = gw.credentials.tenant(caller, _tenant(request))
            gw.require_tool(name)
            body = parse_object(await read_body(request, gw.max_body))
            params = rt.tools[name].parameters
            args, found = elevenlabs_call(params, body, _query(request), request.headers, tenant)
            ctx = _context(rt, found, tenant, _who(Surface.ELEVENLABS, caller))
            result = await rt.execute(ToolCall(name, args, ctx))
            return result.for_llm()

        return await gw.handle(Surface.ELEVENLABS, request, work)

    async def start_call(request: Request) -> Response:
        async def work() -> Any:
            call_id = request.path_params["call_id"]
            caller = await gw.admit(Surface.API, request)
            raw = await read_body(request, gw.max_body)
            body = parse_object(raw) if raw.strip() else {}
            lifecycle_fields(body)
            named = text_or_none(body.get("tenant"))
            ctx = CallContext(
                id=call_id,
                tenant=gw.credentials.tenant(caller, named, _tenant(request)),
                caller=text_or_none(body.get("caller")),
                state=dict(mapping(body.get("state"))),
            )
            starter = getattr(rt, "start_call", None)  # prefetch, where the runtime has it
            if starter is not None:
                await starter(ctx)
            else:
                rt.call_context(ctx)
            return {"call_id": call_id, "started": True}

        return await gw.handle(Surface.API, request, work)

    async def end_call(request: Request) -> Response:
        async def work() -> Any:
            call_id = request.path_params["call_id"]
            caller = await gw.admit(Surface.API, request)
            raw = await read_body(request, gw.max_body)
            body = parse_object(raw) if raw.strip() else {}
            lifecycle_fields(body)
            named = text_or_none(body.get("tenant"))
            # Ends this tenant's call of that id: another tenant's call of the same id goes on.
            await rt.end_call(call_id, gw.credentials.tenant(caller, named, _tenant(request)))
            return {"call_id": call_id, "ended": True}

        return await gw.handle(Surface.API, request, work)

    # The tool-call routes, hit on every call, come first (and `_GatewayApp` short-cuts them).
    return [
        Route("/vapi", vapi, methods=["POST"], name=_FAST),
        Route("/retell/{name}", retell, methods=["POST"], name=_FAST),
        Route("/elevenlabs/{name}", elevenlabs, methods=["POST"], name=_FAST),
        Route("/tools/{name}", call_tool, methods=["POST"], name=_FAST),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/tools", list_tools, methods=["GET"]),
        Route("/calls/{call_id}/start", start_call, methods=["POST"]),
        Route("/calls/{call_id}/end", end_call, methods=["POST"]),
        *dashboard_routes(gw),
        *event_routes(gw),  # GET /calls/{id}/events: Server-Sent Events
        *webhook_routes(gw),  # signed by the API itself: not behind the bearer check
    ]


_FAST = "tool-call"
Endpoint = Callable[[Request], Awaitable[Response]]


class _GatewayApp(Starlette):
    """Starlette, with POSTs to the tool-call routes sent straight to their endpoints.

    Those endpoints catch everything themselves (`Gateway.handle` turns any failure into the
    surface's JSON error), so the exception middlewares and the router's walk over every route
    add nothing but their cost to each tool call; other requests take the usual way.
    """

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.exact: dict[str, Endpoint] = {}
        self.by_prefix: dict[str, Endpoint] = {}  # "/retell/" -> endpoint of /retell/{name}
        for route in self.routes:
            if isinstance(route, Route) and route.name == _FAST:
                endpoint = cast(Endpoint, route.endpoint)
                if route.path.endswith("/{name}"):
                    self.by_prefix[route.path.removesuffix("{name}")] = endpoint
                else:
                    self.exact[route.path] = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint, name = self._match(scope["path"])
            if endpoint is not None:
                scope["app"] = self
                if name is not None:
                    scope["path_params"] = {"name": name}
                response = await endpoint(Request(scope, receive))
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _match(self, path: str) -> tuple[Endpoint | None, str | None]:
        found = self.exact.get(path)
        if found is not None:
            return found, None
        head, slash, name = path.rpartition("/")
        # one non-empty segment after the prefix, as the route's `{name}` matches
        found = self.by_prefix.get(head + slash) if name else None
        return found, (name if found is not None else None)


class _GuardMounts:
    """Bearer-checks requests to mounted apps (e.g. /mcp), which cannot check for themselves,
    and bounds their bodies at `max_body_bytes` before the app reads any of it (the MCP SDK's
    own limit is 4 MiB, answered in plain text)."""

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...], gateway: Gateway) -> None:
        self.app = app
        self.prefixes = prefixes
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.prefixes and scope["path"].startswith(self.prefixes):
            creds = self.gateway.credentials
            request = Request(scope, receive)
            try:
                if not creds.loaded:
                    await creds.load()
                headers = Headers(scope=scope)
                caller = creds.check(Surface.API, headers)
                creds.tenant(caller, headers.get(HEADER_TENANT))  # refused here, as HTTP
                scope[SCOPE_TENANT] = functools.partial(_mcp_tenant, creds, caller)
                body = await read_body(request, self.gateway.max_body)
            except DoorError as err:
                await refuse(Surface.API, request, err)(scope, receive, send)
                return
            except ClientDisconnect:
                return  # gone before its request arrived whole: no one to answer
            receive = _replay(body, receive)
        await self.app(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for an app behind a reader of the body: the body whole first, then the rest."""
    first: Message | None = {"type": "http.request", "body": body, "more_body": False}

    async def replay() -> Message:
        nonlocal first
        if first is None:
            return await receive()
        message, first = first, None
        return message

    return replay


def _mcp_tenant(creds: Credentials, caller: Caller, named: str | None) -> str | None:
    """The tenant an MCP tool call runs as (see `SCOPE_TENANT`)."""
    try:
        return creds.tenant(caller, named)
    except DoorError as err:
        raise PermissionError(err.message) from None


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    if status == 405:
        body = error_body(Surface.API, "method_not_allowed", f"{request.method} is not allowed.")
    else:
        body = error_body(Surface.API, "not_found", f"Nothing at {request_path(request)}.")
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

    `secrets` resolves the gateway's secret references (default: `build_resolver(cfg)`, which
    knows the config's secret managers). `extra_mounts` adds routes (the MCP server at /mcp),
    which the gateway guards with its bearer check; `extra_lifespan` runs inside the app's
    lifespan for them. A `PrometheusSink` is attached to the runtime unless one is passed in. With
    `close_runtime`, the app's shutdown closes the runtime once calls in flight have finished.
    """
    cfg = config if config is not None else runtime.config
    resolver = secrets if secrets is not None else build_resolver(cfg)
    creds_kw: dict[str, Any] = {} if clock_ms is None else {"clock_ms": clock_ms}
    credentials = Credentials(cfg.gateway.auth, resolver, **creds_kw)
    if metrics is None:
        metrics = runtime.metrics  # observe.prometheus: already on the runtime's events
    if metrics is None:
        # Names callers make up (tools, tenants) are counted under one label each.
        tenants = {t for i in cfg.integrations.values() for t in i.tenants}
        tenants.update(cfg.gateway.auth.tenants)
        metrics = PrometheusSink(tools=runtime.tools, tenants=tenants)
        runtime.emitter.add(metrics)
    gw = Gateway(runtime, cfg, credentials, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await credentials.load()  # a missing secret stops the start, not the first call
            runtime.start_webhooks()  # deliveries a stopped gateway stored and did not process
            if not credentials.configured:
                log.warning(
                    "gateway.auth opens no way in (no bearer, no platform secret, open is "
                    "false): every caller will be refused"
                )
            if extra_lifespan is None:
                yield
            else:
                async with extra_lifespan(app):
                    yield
        finally:
            await gw.vapi_control.close()
            if close_runtime:
                # uvicorn runs this after in-flight requests end; background writes drain here.
                await runtime.close()

    prefixes = tuple(p for p in (_prefix(r) for r in extra_mounts) if p)
    app = _GatewayApp(
        routes=[*_routes(gw), *extra_mounts],
        middleware=[Middleware(_GuardMounts, prefixes=prefixes, gateway=gw)],
        exception_handlers={404: _not_found, 405: _not_found, 500: _server_error},
        lifespan=lifespan,
    )
    app.state.gateway = gw
    return app
