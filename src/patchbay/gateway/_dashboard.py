"""`GET /dashboard`: live figures for operators, behind the gateway's own credentials.

The page (`static/dashboard.html`, its script and style sheet, all served from here: no CDN)
polls `GET /dashboard/data`, the figures as JSON. Every route checks the gateway's bearer
credential, sent either as `Authorization: Bearer TOKEN` (curl, a proxy that adds it) or, so
a browser can open the page, as the password of HTTP Basic authentication (any user name):
the 401 invites Basic too, the browser asks once and sends the credential with the page's own
requests. A tenant's credential sees that tenant's figures only.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import time
from collections.abc import Callable, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from patchbay.gateway._auth import Caller
from patchbay.gateway._http import DoorError, Surface
from patchbay.observe._board import LiveBoard
from patchbay.policies._readout import breaker_scopes, read_breaker
from patchbay.spec import Config, Integration
from patchbay.state._protocol import StateError, StateStore

if TYPE_CHECKING:  # the gateway's module imports this one
    from patchbay.gateway._app import Gateway

__all__ = ["BASIC_CHALLENGE", "DASHBOARD_CSP", "dashboard_routes", "figures"]

log = logging.getLogger("patchbay.gateway")

BASIC_CHALLENGE = 'Basic realm="patchbay dashboard", charset="UTF-8"'
# Nothing but the gateway's own origin: no CDN, no inline script, no framing.
DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": DASHBOARD_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_NO_CALLS: dict[str, Any] = {
    "calls": 0,
    "rate_per_min": 0.0,
    "success_rate": None,
    "p50_ms": None,
    "p95_ms": None,
    "p99_ms": None,
    "errors": {},
}
_MAX_ENDPOINT_BREAKERS = 32  # per-endpoint breakers read per scope on each refresh


@functools.cache
def _asset(name: str) -> bytes:
    """A file of the page, read from the package once."""
    return (resources.files("patchbay.gateway") / "static" / name).read_bytes()


def _as_bearer(headers: Mapping[str, str]) -> Mapping[str, str]:
    """`headers`, with HTTP Basic credentials turned into the bearer token they carry.

    The password is the token (a browser cannot send a bearer header from its address bar);
    anything that is not Basic is left for the usual check.
    """
    value = headers.get("authorization") or ""
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return headers
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise DoorError(401, "unauthorized", "The Basic credentials are not readable.") from None
    user, colon, password = decoded.partition(":")
    token = password if colon else user
    return {"authorization": f"Bearer {token}"} if token else {}


def _tenants(config: Config) -> set[str]:
    names = {t for i in config.integrations.values() for t in i.tenants}
    names.update(config.gateway.auth.tenants)
    return names


async def figures(
    board: LiveBoard, config: Config, store: StateStore, tenant: str | None
) -> dict[str, Any]:
    """Everything the page shows, for the operator (`tenant` None) or one tenant."""
    board.prune()
    tools = board.tools_figures(tenant)
    seen = {row["tool"] for row in tools}
    tools += [{"tool": name, **_NO_CALLS} for name in sorted(config.tools) if name not in seen]
    integrations = [
        await _integration(board, integ, store, tenant)
        for _, integ in sorted(config.integrations.items())
    ]
    return {
        "generated_at": round(board.clock(), 3),
        "window_s": board.window_s,
        "view": "operator" if tenant is None else f"tenant {tenant}",
        "tenant": tenant,
        "tools": tools,
        "endpoints": board.endpoint_figures(tenant),
        "integrations": integrations,
        "recent": board.recent_calls(tenant),
        "anomalies": board.listed(board.anomalies, tenant),
        "deprecations": board.listed(board.deprecations, tenant),
        "webhooks_unmatched": board.listed(board.unmatched, tenant),
        "breaker_events": board.listed(board.breaker_events, tenant),
    }


async def _integration(
    board: LiveBoard, integ: Integration, store: StateStore, tenant: str | None
) -> dict[str, Any]:
    name = integ.name
    scopes = [(s, t) for s, t in breaker_scopes(integ) if t is None or tenant in (None, t)]
    own = {t for _, t in breaker_scopes(integ) if t is not None}
    breakers: list[dict[str, Any]] = []
    limits: list[dict[str, Any]] = []
    for scope, scope_tenant in scopes:
        if integ.breaker is not None:
            endpoints = ["*"]
            if integ.breaker.per_endpoint:
                found = set(board.breaker_endpoints.get(name, ()))
                found.update(
                    f"{k[2]} {k[3]}" for k in board.attempts.series if k[1] == name and k[2]
                )
                endpoints = sorted(found)[:_MAX_ENDPOINT_BREAKERS]
            for endpoint in endpoints:
                breakers.append(await _breaker(store, scope, endpoint))
        override = integ.tenants.get(scope_tenant) if scope_tenant else None
        spec = (override.rate_limit if override else None) or integ.rate_limit
        if spec is None:
            continue
        accept = _accepting(scope_tenant, own, tenant)
        sends = board.sends(name, accept)
        used = sends["rate_per_s"] / spec.per_second
        limits.append(
            {
                "scope": scope,
                "per_second": spec.per_second,
                "burst": spec.burst,
                "headroom": round(max(0.0, 1.0 - used), 4),
                "shared": scope_tenant is None and tenant is not None,
                **sends,
            }
        )
    return {"name": name, "breakers": breakers, "rate_limits": limits}


def _accepting(
    scope_tenant: str | None, own: set[str], viewer: str | None
) -> Callable[[str], bool]:
    """Which tenant labels' sends count against a scope's limit, as `viewer` may see them."""
    if viewer is not None:
        return lambda label: label == viewer
    if scope_tenant is not None:
        return lambda label: label == scope_tenant
    return lambda label: label not in own


async def _breaker(store: StateStore, scope: str, endpoint: str) -> dict[str, Any]:
    try:
        reading = await read_breaker(store, scope, endpoint)
    except StateError as exc:
        log.warning("dashboard: breaker state of %s unreadable: %s", scope, type(exc).__name__)
        return {"scope": scope, "endpoint": endpoint, "state": "unknown", "open_until": None}
    left = None if reading.open_until is None else max(0.0, reading.open_until - time.time())
    return {
        "scope": scope,
        "endpoint": endpoint,
        "state": reading.state,
        "open_until": reading.open_until,
        "open_for_s": None if left is None else round(left, 1),
    }


def dashboard_routes(gw: Gateway) -> list[BaseRoute]:
    """The dashboard's routes for a `Gateway`; its `LiveBoard` listens to the runtime."""
    rt, config = gw.runtime, gw.config
    board = LiveBoard(tools=rt.tools, tenants=_tenants(config))
    rt.emitter.add(board)

    async def admitted(request: Request) -> Caller:
        creds = gw.credentials
        if not creds.loaded:
            await creds.load()
        caller: Caller = creds.check(Surface.API, _as_bearer(request.headers))
        return caller

    async def answer(request: Request, work: Callable[[], Any]) -> Response:
        response: Response = await gw.handle(Surface.API, request, work)
        if response.status_code == 401:
            response.headers.append("WWW-Authenticate", BASIC_CHALLENGE)
        response.headers.update(_HEADERS)
        return response

    async def page(request: Request) -> Response:
        async def work() -> Response:
            await admitted(request)
            return Response(_asset("dashboard.html"), media_type="text/html; charset=utf-8")

        return await answer(request, work)

    async def asset(request: Request) -> Response:
        async def work() -> Response:
            await admitted(request)
            name = request.path_params["asset"]
            media = _ASSETS.get(name)
            if media is None:
                raise DoorError(404, "not_found", "The dashboard has no such file.")
            return Response(_asset(name), media_type=media)

        return await answer(request, work)

    async def data(request: Request) -> Response:
        async def work() -> Any:
            caller = await admitted(request)
            return await figures(board, config, rt.store, caller.tenant)

        return await answer(request, work)

    return [
        Route("/dashboard", page, methods=["GET"]),
        Route("/dashboard/data", data, methods=["GET"]),
        Route("/dashboard/{asset}", asset, methods=["GET"]),
    ]
