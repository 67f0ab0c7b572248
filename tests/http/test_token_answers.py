"""Odd answers from an OAuth2 token endpoint: clean errors, never a crash or a bad header."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from patchbay._errors import Unauthorized
from patchbay.http import HttptoolsTransport, SecretResolver, build_authenticator
from patchbay.http._types import Request
from patchbay.spec._auth import OAuth2Auth

from .conftest import Serve

DEEP = b"[" * 200_000 + b"]" * 200_000


async def token_endpoint(serve: Serve, status: int, body: bytes) -> str:
    async def token(_: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/oauth/token", token)
    return await serve(app)


async def fetch_token(base: str, tmp_path: Path) -> str:
    (tmp_path / "secret").write_text("s3cret")
    spec = OAuth2Auth(
        type="oauth2", token_url=f"{base}/oauth/token", client_id="c", secret="file:secret"
    )
    transport = HttptoolsTransport()
    try:
        auth = build_authenticator(spec, SecretResolver(tmp_path), transport)
        sent = await auth.apply(Request("GET", f"{base}/data", "/data", "it", "t"))
    finally:
        await transport.close()
    return sent.headers["Authorization"]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, DEEP),
        (400, b'{"error": "' + b"\\u001b[31m" * 3 + b'"}'),
        (200, b'{"access_token": "tok\\u000bX-Evil: 1", "expires_in": 60}'),
        (200, b'{"access_token": "tok\\r\\nX-Evil: 1"}'),
        (200, b'{"access_token": "t\\ud800k"}'),
        (200, DEEP),
    ],
)
async def test_an_unusable_token_answer_is_unauthorized(
    serve: Serve, tmp_path: Path, status: int, body: bytes
) -> None:
    base = await token_endpoint(serve, status, body)
    with pytest.raises(Unauthorized) as info:
        await fetch_token(base, tmp_path)
    assert "\x1b" not in str(info.value)


@pytest.mark.parametrize(
    "expires_in", [b"7" * 400, b"1e999", b"NaN", b'"-Infinity"', b"-5", b'"soon"', b"1e308"]
)
async def test_any_token_lifetime_is_taken_or_defaulted(
    serve: Serve, tmp_path: Path, expires_in: bytes
) -> None:
    body = b'{"access_token": "tok-1", "expires_in": ' + expires_in + b"}"
    base = await token_endpoint(serve, 200, body)
    assert await fetch_token(base, tmp_path) == "Bearer tok-1"
