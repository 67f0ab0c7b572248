"""A mock of every API a config declares, on loopback: `patchbay mock` and scenario tests.

Each integration gets its own port, so paths are exactly the real API's (a fault's
`path_prefix`, a version prefix and the operations allow-list all read the same). An answer
comes from the tool's or operation's `examples` (arguments -> answer), else from an OpenAPI
document's example for that operation, else from a minimal body the tool's `response` can read.
The mock checks the integration's credential is sent (and equal to the secret when that
resolves), replays the answer of a repeated idempotency key, and takes faults at run time on
`POST /__patchbay/faults`, injected by the same machinery as ``FaultProxy``.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from patchbay._errors import SecretError
from patchbay.http import Secret, SecretResolver, build_resolver
from patchbay.spec import Config, Integration
from patchbay.testing._faults import Fault, FaultProxy
from patchbay.testing._mockdata import (
    Answer,
    Route,
    contract_body,
    load_openapi_answers,
    minimal_body,
    pick_example,
    routes_for,
    template_key,
)

__all__ = ["MockApi"]

CONTROL = "/__patchbay/"
_REPLAYED = "Idempotent-Replayed"


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": message, "code": code}, status=status)


@dataclass(frozen=True, slots=True)
class _Credential:
    """Where the integration's credential travels, and the values accepted (None: any)."""

    header: str | None
    query: str | None
    scheme: str | None  # "Bearer " / "Basic ": the value's required start
    accepted: tuple[Secret, ...] | None

    def refusal(self, request: web.Request) -> str | None:
        """Why the request is refused (missing or wrong credential), or None."""
        if self.query is not None:
            given = request.query.get(self.query)
            where = f"the {self.query} query parameter"
        else:
            assert self.header is not None
            given = request.headers.get(self.header)
            where = f"the {self.header} header"
        if not given or (self.scheme and not given.startswith(self.scheme)):
            return f"missing credentials: send {where}" + (
                f" ({self.scheme.strip()} ...)" if self.scheme else ""
            )
        if self.accepted is not None and not any(s.matches(given) for s in self.accepted):
            return f"invalid credentials in {where}"
        return None


async def _credential(integration: Integration, resolver: SecretResolver) -> _Credential | None:
    auth = integration.auth
    if auth is None or auth.type == "mtls":
        return None  # mTLS is a TLS matter; the mock listens on plain loopback HTTP
    secrets = [auth.secret]
    for tenant in integration.tenants.values():
        if tenant.auth is not None and tenant.auth.type != "mtls":
            secrets.append(tenant.auth.secret)
        if tenant.secret is not None:
            secrets.append(tenant.secret)
    accepted: list[Secret] | None = []
    try:
        values = [(await resolver.resolve(ref)).reveal() for ref in secrets]
    except SecretError:
        accepted = None  # any value will do: the mock cannot know the right one
        values = []
    if auth.type == "api_key":
        if auth.query is None and auth.header is None:
            return None  # sent nowhere the mock can see
        wanted = [Secret(v) for v in values]
        return _Credential(
            None if auth.query else auth.header,
            auth.query,
            None,
            tuple(wanted) if accepted is not None else None,
        )
    if auth.type == "bearer":
        wanted = [Secret(f"Bearer {v}") for v in values]
        return _Credential(
            "Authorization", None, "Bearer ", tuple(wanted) if accepted is not None else None
        )
    if auth.type == "basic":
        wanted = [
            Secret("Basic " + base64.b64encode(f"{auth.username}:{v}".encode()).decode())
            for v in values
        ]
        return _Credential(
            "Authorization", None, "Basic ", tuple(wanted) if accepted is not None else None
        )
    # oauth2 and jwt mint their tokens: only their presence can be checked
    header = auth.header if auth.type == "jwt" else "Authorization"
    return _Credential(header, None, "Bearer " if header == "Authorization" else None, None)


def _fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    return hashlib.sha256(
        b"\0".join([method.encode(), path.encode(), query.encode(), body])
    ).hexdigest()


class _MockServer(FaultProxy):
    """One integration's mock: FaultProxy's fault machinery in front of answers made here."""

    def __init__(
        self,
        config: Config,
        integration: Integration,
        openapi: Mapping[tuple[str, str], Answer],
        *,
        host: str,
        port: int,
    ) -> None:
        # Nothing is forwarded anywhere: _forward below answers in process.
        super().__init__("http://mock.invalid", host=host, port=port)
        self.integration = integration
        self.routes: list[Route] = routes_for(config, integration)
        self._openapi = openapi
        self._resolver = build_resolver(config)
        self._credential: _Credential | None = None
        self._prefix = ""
        if integration.version is not None and integration.version.path_prefix:
            self._prefix = "/" + integration.version.path_prefix.strip("/")
        self._replies: dict[str, tuple[str, Answer]] = {}
        self._ids = itertools.count(1)

    async def start(self) -> Self:
        """Resolve the credential to check, then listen."""
        self._credential = await _credential(self.integration, self._resolver)
        return await super().start()

    def reset(self) -> None:
        """Forget faults, idempotency records and counts."""
        self.clear()
        self._replies.clear()
        self.reset_stats()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(CONTROL):
            return await self._control(request)
        return await super()._handle(request)

    async def _control(self, request: web.Request) -> web.Response:
        what = request.path.removeprefix(CONTROL)
        if what == "faults" and request.method == "DELETE":
            self.clear()
            return web.json_response({"faults": 0})
        if what == "faults" and request.method == "POST":
            try:
                payload = json.loads(await request.read() or b"null")
                items = payload.get("faults") if isinstance(payload, dict) else None
                if not isinstance(items, list):
                    raise ValueError('the body must be {"faults": [{...}, ...]}')
                faults = [Fault.from_mapping(item) for item in items]
            except ValueError as exc:  # json.JSONDecodeError is one
                return _error(400, "MOCK_400", f"bad faults: {exc}")
            for fault in faults:
                self.add(fault)
            return web.json_response({"faults": len(faults)})
        if what == "reset" and request.method == "POST":
            self.reset()
            return web.json_response({"reset": True})
        if what == "stats" and request.method == "GET":
            stats = self.stats()
            return web.json_response(
                {"total": stats.total, "faults": dict(stats.faults), "by_path": dict(stats.by_path)}
            )
        return _error(404, "MOCK_404", f"no control endpoint {request.method} {request.path}")

    async def _forward(self, request: web.Request) -> web.Response:
        self._forwarded += 1  # "answered by the mock", in FaultProxy's counts
        path = request.path
        if self._prefix:
            if not path.startswith(self._prefix + "/"):
                return _error(404, "MOCK_404", f"paths of this API start with {self._prefix}")
            path = path.removeprefix(self._prefix)
        if self._credential is not None:
            refusal = self._credential.refusal(request)
            if refusal is not None:
                return _error(401, "MOCK_401", refusal)
        candidates = [r for r in self.routes if r.pattern.fullmatch(path)]
        route = next((r for r in candidates if r.method == request.method), None)
        if route is None:
            if candidates:
                allowed = ", ".join(sorted({r.method for r in candidates}))
                return _error(405, "MOCK_405", f"{path} takes {allowed}, not {request.method}")
            return _error(404, "MOCK_404", f"no declared operation {request.method} {path}")
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return _error(400, "MOCK_400", "the request body is not JSON")
        key = request.headers.get(route.idempotency_header)
        if key is None:
            return self._send(self._answer(route, path, dict(request.query), body))
        fingerprint = _fingerprint(request.method, path, request.query_string, raw)
        seen = self._replies.get(key)
        if seen is not None:
            if seen[0] != fingerprint:
                return _error(
                    409, "IDEMPOTENCY_KEY_REUSE", "idempotency key reused with another request"
                )
            return self._send(seen[1], replayed=True)
        answer = self._answer(route, path, dict(request.query), body)
        if answer.status < 500:  # a failure changed nothing: the same key may try again
            self._replies[key] = (fingerprint, answer)
        return self._send(answer)

    def _answer(self, route: Route, path: str, query: dict[str, str], body: Any) -> Answer:
        args = route.arguments(path, query, body)
        example = pick_example(route, args)
        if example is not None:
            given = example.answer
            return Answer(given.status, given.body, given.headers)
        found = self._openapi.get(template_key(route.method, route.template))
        if found is not None:
            return found
        if route.tool is None:
            return Answer(200, {})
        if route.tool.response.expect is not None:  # the answer the tool's contract describes
            return Answer(200, contract_body(route.tool.response.expect, args))
        return Answer(200, minimal_body(route.tool.response, args, self._ids))

    @staticmethod
    def _send(answer: Answer, *, replayed: bool = False) -> web.Response:
        headers = dict(answer.headers)
        if replayed:
            headers[_REPLAYED] = "true"
        if answer.body is None:
            return web.Response(status=answer.status, headers=headers)
        text = json.dumps(answer.body, ensure_ascii=False)
        return web.Response(
            status=answer.status, text=text, content_type="application/json", headers=headers
        )


class MockApi:
    """Every integration of a config, mocked on loopback: ``async with MockApi(cfg) as mock``.

    Integration i (in config order) listens on ``port + i`` (any free port when ``port`` is 0);
    ``url_for(name)`` is its base URL and ``url`` the first one's. Faults go to one integration
    or all: ``add_fault``, ``clear_faults``, or ``POST/DELETE /__patchbay/faults`` on its port.
    """

    def __init__(
        self,
        config: Config,
        *,
        openapi: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not config.integrations:
            raise ValueError("the config declares no integrations: there is nothing to mock")
        answers = load_openapi_answers(openapi) if openapi is not None else {}
        self._servers = {
            name: _MockServer(config, integration, answers, host=host, port=port + i if port else 0)
            for i, (name, integration) in enumerate(config.integrations.items())
        }
        self._running = False

    @property
    def url(self) -> str:
        """The first integration's base URL."""
        return next(iter(self._servers.values())).url

    def url_for(self, integration: str) -> str:
        """The base URL that answers for `integration`."""
        server = self._servers.get(integration)
        if server is None:
            raise KeyError(f"no integration {integration!r}; mocked: {', '.join(self._servers)}")
        return server.url

    @property
    def urls(self) -> dict[str, str]:
        """Each integration's base URL."""
        return {name: server.url for name, server in self._servers.items()}

    def routes(self, integration: str) -> list[tuple[str, str]]:
        """The (method, path template) pairs the mock of `integration` answers."""
        return [(r.method, r.template) for r in self._servers[integration].routes]

    def add_fault(self, fault: Fault, integration: str | None = None) -> None:
        """Inject a fault into one integration's answers, or every integration's."""
        for name, server in self._servers.items():
            if integration is None or name == integration:
                server.add(fault)

    def clear_faults(self, integration: str | None = None) -> None:
        """Drop the faults of one integration, or of all."""
        for name, server in self._servers.items():
            if integration is None or name == integration:
                server.clear()

    def reset(self) -> None:
        """Forget faults, idempotency records and counts everywhere."""
        for server in self._servers.values():
            server.reset()

    async def start(self) -> Self:
        """Listen on every integration's port."""
        try:
            for server in self._servers.values():
                await server.start()
        except BaseException:
            await self.stop()
            raise
        self._running = True
        return self

    async def stop(self) -> None:
        """Close every port."""
        self._running = False
        for server in self._servers.values():
            await server.stop()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        state = ", ".join(f"{n}={s.url}" for n, s in self._servers.items()) if self._running else ""
        return f"<MockApi {state or 'stopped'}>"
