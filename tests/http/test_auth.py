"""Each auth type as the upstream sees it on the wire, against real loopback servers."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import TypeAdapter

from patchbay._errors import ConfigError, SecretError, Unauthorized, UpstreamUnavailable
from patchbay.http._auth import (
    Authenticator,
    JwtSigner,
    OAuth2ClientCredentials,
    build_authenticator,
)
from patchbay.http._secrets import SecretResolver
from patchbay.http._types import Request, Response, Transport
from patchbay.spec._auth import AuthSpec, BearerAuth, JwtAuth, OAuth2Auth

Serve = Callable[..., Awaitable[str]]
CLIENT_SECRET = "client-secret-0123456789-never-logged"
API_KEY = "api-key-0123456789-never-logged"
HMAC_KEY = "hmac-key-for-tests-0123456789-0123456789-abcdef"
auth_spec: TypeAdapter[AuthSpec] = TypeAdapter(AuthSpec)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def get(url: str) -> Request:
    return Request(method="GET", url=url, path_template="/data", integration="it", tool="t")


async def seen_by_server(auth: Authenticator, transport: Transport, url: str) -> dict[str, Any]:
    response = await transport.send(await auth.apply(get(url)), 5.0)
    assert response.status == 200
    result: dict[str, Any] = response.json()
    return result


async def send_with_auth(
    auth: Authenticator, transport: Transport, url: str, *, pass_request: bool = True
) -> Response:
    """What the pipeline's auth step does: apply, send, and on a 401 maybe refresh once."""
    sent = await auth.apply(get(url))
    response = await transport.send(sent, 5.0)
    if response.status == 401 and await auth.on_unauthorized(sent if pass_request else None):
        response = await transport.send(await auth.apply(get(url)), 5.0)
    return response


@pytest.fixture
async def echo_url(serve: Serve) -> str:
    async def echo(req: web.Request) -> web.Response:
        return web.json_response({"headers": dict(req.headers), "query": list(req.query.items())})

    app = web.Application()
    app.router.add_get("/data", echo)
    return await serve(app)


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> SecretResolver:
    monkeypatch.setenv("PB_API_KEY", API_KEY)
    monkeypatch.setenv("PB_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("PB_HMAC", HMAC_KEY)
    return SecretResolver()


@pytest.mark.parametrize(
    ("spec", "header", "expected"),
    [
        ({"type": "api_key", "secret": "env:PB_API_KEY"}, "X-API-Key", API_KEY),
        (
            {"type": "api_key", "secret": "env:PB_API_KEY", "header": "X-Custom-Key"},
            "X-Custom-Key",
            API_KEY,
        ),
        ({"type": "bearer", "secret": "env:PB_API_KEY"}, "Authorization", f"Bearer {API_KEY}"),
        (
            {"type": "basic", "username": "svc", "secret": "env:PB_API_KEY"},
            "Authorization",
            "Basic " + base64.b64encode(f"svc:{API_KEY}".encode()).decode(),
        ),
    ],
    ids=["api_key", "api_key-header", "bearer", "basic"],
)
async def test_static_credentials_on_the_wire(
    transport: Transport,
    echo_url: str,
    secrets: SecretResolver,
    spec: dict[str, Any],
    header: str,
    expected: str,
) -> None:
    auth = build_authenticator(auth_spec.validate_python(spec), secrets, transport)
    seen = await seen_by_server(auth, transport, f"{echo_url}/data")
    assert seen["headers"][header] == expected
    assert seen["query"] == []
    assert API_KEY not in repr(auth)


async def test_api_key_in_the_query(
    transport: Transport, echo_url: str, secrets: SecretResolver
) -> None:
    spec = auth_spec.validate_python(
        {"type": "api_key", "secret": "env:PB_API_KEY", "query": "key"}
    )
    auth = build_authenticator(spec, secrets, transport)
    seen = await seen_by_server(auth, transport, f"{echo_url}/data")
    assert seen["query"] == [["key", API_KEY]]
    assert "X-API-Key" not in seen["headers"]


async def test_no_auth_sends_nothing(transport: Transport, echo_url: str) -> None:
    auth = build_authenticator(None, SecretResolver(), transport)
    seen = await seen_by_server(auth, transport, f"{echo_url}/data")
    assert "Authorization" not in seen["headers"] and "X-API-Key" not in seen["headers"]
    assert await auth.on_unauthorized() is False


def test_a_literal_secret_is_refused_when_building(transport: Transport) -> None:
    # The spec refuses literals at load time; the authenticator refuses them again for specs
    # built in code without validation.
    with pytest.raises(ValueError, match="secret reference"):
        auth_spec.validate_python({"type": "bearer", "secret": API_KEY})
    spec = BearerAuth.model_construct(type="bearer", secret=API_KEY)
    with pytest.raises(SecretError) as info:
        build_authenticator(spec, SecretResolver(), transport)
    assert API_KEY not in str(info.value)


def test_api_key_needs_a_header_or_query(transport: Transport) -> None:
    spec = auth_spec.validate_python({"type": "api_key", "secret": "env:X", "header": None})
    with pytest.raises(ConfigError):
        build_authenticator(spec, SecretResolver(), transport)


async def test_a_rotated_key_is_retried_once_an_unchanged_one_is_not(
    transport: Transport, serve: Serve, tmp_path: Path
) -> None:
    async def only_new_key(req: web.Request) -> web.Response:
        ok = req.headers.get("X-API-Key") == "key-two"
        return web.json_response({}, status=200 if ok else 401)

    app = web.Application()
    app.router.add_get("/data", only_new_key)
    url = f"{await serve(app)}/data"
    (tmp_path / "key").write_text("key-one\n")
    spec = auth_spec.validate_python({"type": "api_key", "secret": "file:key"})
    auth = build_authenticator(spec, SecretResolver(base_dir=tmp_path), transport)
    assert (await send_with_auth(auth, transport, url)).status == 401
    (tmp_path / "key").write_text("key-two\n")
    assert (await send_with_auth(auth, transport, url)).status == 200


class TokenServer:
    """An OAuth2 token endpoint plus an API that accepts only the tokens it issued."""

    def __init__(self, expires_in: int | str = 3600) -> None:
        self.expires_in = expires_in
        self.forms: list[dict[str, str]] = []
        self.content_types: list[str] = []
        self.valid: set[str] = set()
        self.fail_with: tuple[int, dict[str, Any]] | None = None
        self.refusals = 0

    async def token(self, req: web.Request) -> web.Response:
        self.content_types.append(req.content_type)
        form = dict(await req.post())
        self.forms.append({k: str(v) for k, v in form.items()})
        await asyncio.sleep(0.02)  # long enough for concurrent callers to pile up
        if self.fail_with is not None:
            return web.json_response(self.fail_with[1], status=self.fail_with[0])
        if form.get("client_secret") != CLIENT_SECRET:
            return web.json_response({"error": "invalid_client"}, status=401)
        token = f"tok-{len(self.forms)}"
        self.valid.add(token)
        return web.json_response(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        )

    async def data(self, req: web.Request) -> web.Response:
        token = req.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.valid:
            # staggered, so some 401s for a revoked token arrive after its replacement exists
            self.refusals += 1
            await asyncio.sleep(0.01 * (self.refusals % 10))
            return web.json_response({"error": "bad token"}, status=401)
        return web.json_response({"token": token})

    async def start(self, serve: Serve) -> str:
        app = web.Application()
        app.router.add_post("/oauth/token", self.token)
        app.router.add_get("/data", self.data)
        return await serve(app)


def oauth_spec(base: str, **kw: Any) -> OAuth2Auth:
    return OAuth2Auth(
        type="oauth2",
        token_url=f"{base}/oauth/token",
        client_id="patchbay-client",
        secret="env:PB_CLIENT_SECRET",
        **kw,
    )


async def test_oauth2_fetches_one_token_for_many_requests(
    transport: Transport, serve: Serve, secrets: SecretResolver
) -> None:
    server = TokenServer()
    base = await server.start(serve)
    spec = oauth_spec(base, scope="billing:read", audience="https://billing")
    auth = build_authenticator(spec, secrets, transport)
    for _ in range(20):
        assert (await send_with_auth(auth, transport, f"{base}/data")).json() == {"token": "tok-1"}
    answers = await asyncio.gather(
        *(send_with_auth(auth, transport, f"{base}/data") for _ in range(50))
    )
    assert {a.status for a in answers} == {200}
    assert len(server.forms) == 1
    assert server.content_types == ["application/x-www-form-urlencoded"]
    assert server.forms[0] == {
        "grant_type": "client_credentials",
        "client_id": "patchbay-client",
        "client_secret": CLIENT_SECRET,
        "scope": "billing:read",
        "audience": "https://billing",
    }


async def test_oauth2_concurrent_first_callers_share_one_fetch(
    transport: Transport, serve: Serve, secrets: SecretResolver
) -> None:
    server = TokenServer()
    base = await server.start(serve)
    auth = build_authenticator(oauth_spec(base), secrets, transport)
    answers = await asyncio.gather(
        *(send_with_auth(auth, transport, f"{base}/data") for _ in range(50))
    )
    assert {a.status for a in answers} == {200}
    assert len(server.forms) == 1


@pytest.mark.parametrize("expires_in", [300, "300"], ids=["number", "string"])
async def test_oauth2_refreshes_before_expiry(
    transport: Transport, serve: Serve, secrets: SecretResolver, expires_in: int | str
) -> None:
    server = TokenServer(expires_in=expires_in)
    base = await server.start(serve)
    clock = Clock()
    auth = OAuth2ClientCredentials(
        oauth_spec(base, refresh_before_s=30), secrets, transport, clock=clock
    )
    url = f"{base}/data"
    assert (await send_with_auth(auth, transport, url)).json() == {"token": "tok-1"}
    clock.now += 269
    assert (await send_with_auth(auth, transport, url)).json() == {"token": "tok-1"}
    assert len(server.forms) == 1
    clock.now += 2  # past expires_in - refresh_before_s: refreshed behind the caller's back
    assert (await send_with_auth(auth, transport, url)).json() == {"token": "tok-1"}
    for _ in range(300):
        answer = (await send_with_auth(auth, transport, url)).json()
        if answer != {"token": "tok-1"}:
            break
        await asyncio.sleep(0.01)
    assert answer == {"token": "tok-2"}
    assert len(server.forms) == 2
    clock.now += 301  # past expiry: the caller has to wait for a new token
    assert (await send_with_auth(auth, transport, url)).json() == {"token": "tok-3"}
    assert len(server.forms) == 3


async def test_a_failed_early_refresh_keeps_the_token_and_backs_off(
    transport: Transport, serve: Serve, secrets: SecretResolver
) -> None:
    server = TokenServer(expires_in=300)
    base = await server.start(serve)
    clock = Clock()
    auth = OAuth2ClientCredentials(
        oauth_spec(base, refresh_before_s=30), secrets, transport, clock=clock
    )
    url = f"{base}/data"
    assert (await send_with_auth(auth, transport, url)).status == 200
    server.fail_with = (503, {"error": "down"})
    clock.now += 280
    for _ in range(5):
        assert (await send_with_auth(auth, transport, url)).json() == {"token": "tok-1"}
        await asyncio.sleep(0.05)  # lets a background refresh finish (and fail)
    assert len(server.forms) == 2  # one failed refresh, then a pause before the next
    clock.now += 6
    server.fail_with = None
    assert (await send_with_auth(auth, transport, url)).json() == {"token": "tok-1"}
    await asyncio.sleep(0.1)
    assert (await send_with_auth(auth, transport, url)).json() == {"token": "tok-3"}


@pytest.mark.parametrize("pass_request", [True, False], ids=["sent-request", "task-context"])
async def test_oauth2_401_refreshes_once_for_many_requests_then_succeeds(
    transport: Transport, serve: Serve, secrets: SecretResolver, pass_request: bool
) -> None:
    server = TokenServer()
    base = await server.start(serve)
    auth = build_authenticator(oauth_spec(base), secrets, transport)
    url = f"{base}/data"
    assert (await send_with_auth(auth, transport, url)).status == 200
    server.valid.clear()  # the upstream revokes tok-1
    answers = await asyncio.gather(
        *(send_with_auth(auth, transport, url, pass_request=pass_request) for _ in range(10))
    )
    assert [a.json() for a in answers] == [{"token": "tok-2"}] * 10
    assert len(server.forms) == 2


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"error": "invalid_client", "error_description": CLIENT_SECRET}, Unauthorized),
        (200, {"token_type": "Bearer"}, Unauthorized),
        (503, {"error": "down"}, UpstreamUnavailable),
    ],
    ids=["refused", "no-token", "down"],
)
async def test_token_endpoint_failures_are_words_without_secrets(
    transport: Transport,
    serve: Serve,
    secrets: SecretResolver,
    caplog: pytest.LogCaptureFixture,
    status: int,
    body: dict[str, Any],
    error: type[Exception],
) -> None:
    caplog.set_level(logging.DEBUG)
    server = TokenServer()
    server.fail_with = (status, body)
    base = await server.start(serve)
    auth = build_authenticator(oauth_spec(base), secrets, transport)
    with pytest.raises(error) as info:
        await auth.apply(get(f"{base}/data"))
    text = f"{info.value} {info.value!r} {info.value.__dict__}"
    assert CLIENT_SECRET not in text
    assert CLIENT_SECRET not in caplog.text
    if status == 401:
        assert "invalid_client" in str(info.value)
        assert isinstance(info.value, Unauthorized) and info.value.status_code == 401
    server.fail_with = None
    assert (await send_with_auth(auth, transport, f"{base}/data")).status == 200


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.mark.parametrize("algorithm", ["HS256", "RS256", "ES256"])
async def test_jwt_is_verifiable_by_the_server(
    transport: Transport,
    serve: Serve,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    algorithm: str,
) -> None:
    if algorithm == "HS256":
        monkeypatch.setenv("PB_JWT_KEY", HMAC_KEY)
        ref, verify_key = "env:PB_JWT_KEY", HMAC_KEY
    else:
        private = (
            rsa.generate_private_key(65537, 2048)
            if algorithm == "RS256"
            else ec.generate_private_key(ec.SECP256R1())
        )
        (tmp_path / "key.pem").write_text(_pem(private))
        ref, verify_key = "file:key.pem", private.public_key()  # type: ignore[assignment]

    async def verify(req: web.Request) -> web.Response:
        token = req.headers["Authorization"].removeprefix("Bearer ")
        try:
            claims = jwt.decode(
                token,
                verify_key,
                algorithms=[algorithm],
                audience="billing",
                issuer="patchbay",
                options={"require": ["exp", "iat", "jti"]},
            )
        except jwt.InvalidTokenError as exc:
            return web.json_response({"error": str(exc)}, status=401)
        return web.json_response({"claims": claims, "kid": jwt.get_unverified_header(token)["kid"]})

    app = web.Application()
    app.router.add_get("/data", verify)
    url = await serve(app)
    spec = JwtAuth(
        type="jwt",
        algorithm=algorithm,  # type: ignore[arg-type]
        secret=ref,
        claims={"iss": "patchbay", "aud": "billing", "sub": "voice-agent"},
        ttl_s=120,
        key_id="key-1",
    )
    auth = build_authenticator(spec, SecretResolver(base_dir=tmp_path), transport)
    response = await transport.send(await auth.apply(get(f"{url}/data")), 5.0)
    assert response.status == 200, response.json()
    seen = response.json()
    assert seen["kid"] == "key-1"
    claims = seen["claims"]
    assert claims["sub"] == "voice-agent"
    assert claims["exp"] - claims["iat"] == 120
    assert abs(claims["iat"] - time.time()) < 5
    assert len(claims["jti"]) >= 16


async def test_jwt_is_cached_and_resigned_when_little_life_remains(
    secrets: SecretResolver,
) -> None:
    clock = Clock(now=time.time())
    spec = JwtAuth(type="jwt", secret="env:PB_HMAC", ttl_s=100, header="X-Token")
    signer = JwtSigner(spec, secrets, clock=clock)
    first = (await signer.apply(get("http://api/data"))).headers["X-Token"]
    clock.now += 79
    assert (await signer.apply(get("http://api/data"))).headers["X-Token"] == first
    clock.now += 2  # under 20% of its life left
    second = (await signer.apply(get("http://api/data"))).headers["X-Token"]
    assert second != first
    claims = jwt.decode(second, HMAC_KEY, algorithms=["HS256"], options={"verify_iat": False})
    assert claims["iat"] == int(clock.now)
    # a custom header carries the bare token; an unchanged key is no reason to retry a 401
    assert (
        await signer.on_unauthorized(get("http://api/data").with_headers({"X-Token": second}))
        is False
    )


async def test_jwt_with_a_bad_pem_names_the_reference_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PB_BAD_PEM", "not-a-pem-" + API_KEY)
    spec = JwtAuth(type="jwt", algorithm="RS256", secret="env:PB_BAD_PEM")
    signer = JwtSigner(spec, SecretResolver())
    with pytest.raises(SecretError, match="env:PB_BAD_PEM") as info:
        await signer.apply(get("http://api/data"))
    assert API_KEY not in repr(info.value)
