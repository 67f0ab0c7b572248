"""Credentials for an integration's requests: API key, bearer, basic, OAuth2, JWT, mTLS.

An authenticator adds credentials to each request and says, after a 401, whether a retry with
fresh credentials makes sense. Secrets are resolved lazily through a `SecretResolver`.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextvars
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from patchbay._errors import ConfigError, SecretError, Unauthorized, UpstreamUnavailable
from patchbay.http._secrets import Secret, SecretResolver
from patchbay.http._tls import MutualTls
from patchbay.http._types import Request, Response, Transport
from patchbay.spec._auth import (
    ApiKeyAuth,
    AuthSpec,
    BasicAuth,
    BearerAuth,
    JwtAuth,
    MtlsAuth,
    OAuth2Auth,
)

__all__ = [
    "Authenticator",
    "JwtSigner",
    "MutualTls",
    "NoAuth",
    "OAuth2ClientCredentials",
    "build_authenticator",
]

Clock = Callable[[], float]
_REFRESH_RETRY_S = 5.0
_MAX_TOKEN_LIFE_S = 86400.0  # what a token endpoint's expires_in counts for at most

# The credential the current task last sent, per authenticator: lets on_unauthorized() tell
# a 401 for a stale credential (already replaced: just retry) from one for the current one.
_sent: contextvars.ContextVar[tuple[int, str] | None] = contextvars.ContextVar(
    "patchbay_auth_sent", default=None
)


class Authenticator(Protocol):
    """Adds credentials to requests; refreshes them after a 401 when that can help."""

    async def apply(self, request: Request) -> Request:
        """The request with credentials added."""
        ...

    async def on_unauthorized(self, request: Request | None = None) -> bool:
        """After a 401 for `request` (as sent), whether a retry with fresh credentials helps."""
        # without `request`, the credential this task's last apply() sent is the one refused
        ...

    async def close(self) -> None:
        """Release whatever the authenticator holds."""
        ...


class NoAuth:
    """No credentials."""

    async def apply(self, request: Request) -> Request:
        """The request unchanged."""
        return request

    async def on_unauthorized(self, request: Request | None = None) -> bool:
        """Never worth a retry."""
        return False

    async def close(self) -> None:
        """Nothing to release."""


class _Credential(abc.ABC):
    """Shared logic: remember what each task sent, and decide on a 401."""

    def _sent_by(self, request: Request | None) -> str | None:
        if request is not None:
            return self._credential_in(request)
        sent = _sent.get()
        return sent[1] if sent is not None and sent[0] == id(self) else None

    def _mark(self, value: str) -> None:
        mark = (id(self), value)
        if _sent.get() != mark:  # setting copies the task's context: only when it changes
            _sent.set(mark)

    @abc.abstractmethod
    def _credential_in(self, request: Request) -> str | None:
        """The credential a sent request carries, to compare with the current one."""

    async def close(self) -> None:  # noqa: B027 - most credentials hold nothing to release
        """Nothing to release."""


class _StaticAuth(_Credential):
    """A credential made from secrets that change only when they are rotated."""

    def __init__(
        self,
        secrets: SecretResolver,
        refs: tuple[str, ...],
        render: Callable[[tuple[str, ...]], str],
        header: str | None,
        query: str | None = None,
    ) -> None:
        for ref in refs:
            secrets.check(ref)  # a literal in the config fails at startup, not on a call
        self._secrets = secrets
        self._refs = refs
        self._render = render
        self._header = header
        self._query = query
        self._rendered: tuple[tuple[Secret, ...], str] | None = None

    async def _current(self) -> str:
        secrets = self._secrets
        rendered = self._rendered
        if rendered is not None:
            # the resolver hands out the same Secret objects until a value is re-read
            for ref, seen in zip(self._refs, rendered[0], strict=True):
                if secrets.cached(ref) is not seen:
                    break
            else:
                return rendered[1]
        values = tuple([await secrets.resolve(ref) for ref in self._refs])
        if rendered is None or any(a is not b for a, b in zip(rendered[0], values, strict=True)):
            rendered = self._rendered = (values, self._render(tuple(v.reveal() for v in values)))
        return rendered[1]

    async def apply(self, request: Request) -> Request:
        """The request with the credential in its header or query parameter."""
        value = await self._current()
        self._mark(value)
        if self._query is not None:
            return request.with_query(((self._query, value),))
        assert self._header is not None
        return request.with_headers({self._header: value})

    def _credential_in(self, request: Request) -> str | None:
        if self._query is not None:
            return next((v for k, v in request.query if k == self._query), None)
        assert self._header is not None
        return _header(request, self._header)

    async def on_unauthorized(self, request: Request | None = None) -> bool:
        """Re-read the secrets; a retry helps only if they were rotated since that send."""
        sent = self._sent_by(request)
        current = await self._current()
        if sent is not None and current != sent:
            return True
        for ref in self._refs:
            self._secrets.invalidate(ref)
        return await self._current() != current


class _Token:
    __slots__ = ("expires_at", "refresh_at", "value")

    def __init__(self, value: str, refresh_at: float, expires_at: float | None = None) -> None:
        self.value = value
        self.refresh_at = refresh_at
        self.expires_at = refresh_at if expires_at is None else expires_at


class OAuth2ClientCredentials(_Credential):
    """OAuth 2.0 client credentials: one cached token, fetched once however many ask."""

    def __init__(
        self,
        spec: OAuth2Auth,
        secrets: SecretResolver,
        transport: Transport,
        *,
        timeout_s: float = 10.0,
        clock: Clock = time.monotonic,
    ) -> None:
        secrets.check(spec.secret)
        self._spec = spec
        self._secrets = secrets
        self._transport = transport
        self._timeout = timeout_s
        self._clock = clock
        self._token: _Token | None = None
        self._fetching: asyncio.Task[_Token] | None = None
        self._retry_at = 0.0
        self.fetches = 0  # how many token requests were sent, for tests and metrics

    async def _get(self) -> _Token:
        token = self._token
        now = self._clock()
        if token is not None and now < token.refresh_at:
            return token
        task = self._fetching
        if token is not None and now < token.expires_at:
            # refresh in the background: a caller on a live call never waits for the token
            # endpoint while the current token is still good
            if task is None and now >= self._retry_at:
                self._start()
            return token
        if task is None:
            task = self._start()
        # shielded: a caller whose budget ran out must not cancel everyone's token request
        return await asyncio.shield(task)

    def _start(self) -> asyncio.Task[_Token]:
        task = self._fetching = asyncio.ensure_future(self._fetch())
        task.add_done_callback(self._fetched)
        return task

    def _fetched(self, task: asyncio.Task[_Token]) -> None:
        if self._fetching is task:
            self._fetching = None
        if task.cancelled():
            return
        if task.exception() is None:
            self._token = task.result()
        else:
            # a failed early refresh is retried a few seconds later, not on every request
            self._retry_at = self._clock() + _REFRESH_RETRY_S

    async def _fetch(self) -> _Token:
        spec = self._spec
        secret = await self._secrets.resolve(spec.secret)
        form = [
            ("grant_type", "client_credentials"),
            ("client_id", spec.client_id),
            ("client_secret", secret.reveal()),
        ]
        if spec.scope:
            form.append(("scope", spec.scope))
        if spec.audience:
            form.append(("audience", spec.audience))
        request = Request(
            method="POST",
            url=spec.token_url,
            path_template=urlsplit(spec.token_url).path or "/",
            integration="oauth2",
            tool="",
            headers={"Accept": "application/json"},
            form=tuple(form),
            has_body=True,
        )
        self.fetches += 1
        sent_at = self._clock()
        response = await self._transport.send(request, self._timeout)
        if response.status >= 500:
            raise UpstreamUnavailable(
                "The sign-in service is not answering.", status_code=response.status
            )
        try:
            body: Any = response.json() if response.status < 400 else None
        except UpstreamUnavailable:
            body = None
        if response.status >= 400:
            code = _oauth_error(response)
            raise Unauthorized(
                f"The sign-in service refused our credentials (HTTP {response.status}"
                + (f", {code})." if code else ")."),
                status_code=response.status,
                upstream_code=code,
            )
        token = body.get("access_token") if isinstance(body, dict) else None
        # it goes into a header: a control character there would split or end the header
        if not isinstance(token, str) or not token or not (token.isascii() and token.isprintable()):
            raise Unauthorized(
                "The sign-in service gave no usable token.", status_code=response.status
            )
        life = _seconds(body.get("expires_in"), default=3600.0)
        # refresh early, but never so early that a short-lived token is refetched every call
        early = min(spec.refresh_before_s, life / 2)
        return _Token(token, sent_at + life - early, sent_at + life)

    async def apply(self, request: Request) -> Request:
        """The request with `Authorization: Bearer <access token>`."""
        token = await self._get()
        self._mark(token.value)
        return request.with_headers({"Authorization": f"Bearer {token.value}"})

    def _credential_in(self, request: Request) -> str | None:
        return _bearer(_header(request, "Authorization"))

    async def on_unauthorized(self, request: Request | None = None) -> bool:
        """Drop the token the 401 was for (once, however many requests saw it) and retry."""
        sent = self._sent_by(request)
        token = self._token
        if token is not None and (sent is None or token.value == sent):
            self._token = None
        return True

    async def close(self) -> None:
        """Stop a token request in flight."""
        task, self._fetching = self._fetching, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class JwtSigner(_Credential):
    """Short-lived JWTs signed here (HS256, RS256, ES256), re-signed when 80% of life is gone."""

    def __init__(self, spec: JwtAuth, secrets: SecretResolver, *, clock: Clock = time.time) -> None:
        secrets.check(spec.secret)
        self._spec = spec
        self._secrets = secrets
        self._clock = clock
        self._key: Any = None
        self._key_source: str | None = None
        self._token: _Token | None = None

    async def _signing_key(self) -> Any:
        raw = (await self._secrets.resolve(self._spec.secret)).reveal()
        if raw != self._key_source:
            if self._spec.algorithm == "HS256":
                key: Any = raw
            else:
                try:
                    key = load_pem_private_key(raw.encode(), password=None)
                except (ValueError, TypeError):
                    raise SecretError(
                        f"secret {self._spec.secret} is not an unencrypted PEM private key"
                    ) from None
            self._key, self._key_source, self._token = key, raw, None
        return self._key

    def _sign(self, key: Any) -> _Token:
        spec = self._spec
        now = self._clock()
        claims = {
            **spec.claims,
            "iat": int(now),
            "exp": int(now + spec.ttl_s),
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": spec.key_id} if spec.key_id else None
        value = jwt.encode(claims, key, algorithm=spec.algorithm, headers=headers)
        return _Token(value, now + spec.ttl_s * 0.8)

    async def apply(self, request: Request) -> Request:
        """The request with a fresh-enough signed token."""
        key = await self._signing_key()
        token = self._token
        if token is None or self._clock() >= token.refresh_at:
            token = self._token = self._sign(key)
        self._mark(token.value)
        if self._spec.header.lower() == "authorization":
            return request.with_headers({self._spec.header: f"Bearer {token.value}"})
        return request.with_headers({self._spec.header: token.value})

    def _credential_in(self, request: Request) -> str | None:
        value = _header(request, self._spec.header)
        return _bearer(value) if self._spec.header.lower() == "authorization" else value

    async def on_unauthorized(self, request: Request | None = None) -> bool:
        """A retry helps only with a key rotated since that send; re-read it to find out."""
        sent = self._sent_by(request)
        token = self._token
        if token is not None and sent is not None and token.value != sent:
            return True
        source = self._key_source
        self._secrets.invalidate(self._spec.secret)
        await self._signing_key()
        return self._key_source != source


def _header(request: Request, name: str) -> str | None:
    value = request.headers.get(name)
    if value is not None:
        return value
    lname = name.lower()
    return next((v for k, v in request.headers.items() if k.lower() == lname), None)


def _bearer(value: str | None) -> str | None:
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token if scheme.lower() == "bearer" else value


def _oauth_error(response: Response) -> str | None:
    """The RFC 6749 `error` code of a token endpoint's answer (never its description)."""
    try:
        data = response.json()
    except UpstreamUnavailable:
        return None
    code = data.get("error") if isinstance(data, dict) else None
    if isinstance(code, str) and len(code) <= 64 and code.isascii() and code.isprintable():
        return code
    return None


def _seconds(value: object, *, default: float) -> float:
    """A token lifetime; some providers send it as a string, a few not at all."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int of 400 digits
        return default
    # NaN fails the comparison; a lifetime of years is refreshed daily all the same
    return min(seconds, _MAX_TOKEN_LIFE_S) if seconds >= 1 else default


def _basic(values: tuple[str, ...]) -> str:
    return "Basic " + base64.b64encode(f"{values[0]}:{values[1]}".encode()).decode("ascii")


def build_authenticator(
    spec: AuthSpec | None,
    secrets: SecretResolver,
    transport: Transport,
) -> Authenticator:
    """The authenticator for an integration's auth spec (None: no credentials)."""
    if spec is None:
        return NoAuth()
    if isinstance(spec, ApiKeyAuth):
        if spec.query is None and spec.header is None:
            raise ConfigError("api_key auth needs a header or a query parameter", "auth")
        return _StaticAuth(secrets, (spec.secret,), lambda v: v[0], spec.header, spec.query)
    if isinstance(spec, BearerAuth):
        return _StaticAuth(secrets, (spec.secret,), lambda v: f"Bearer {v[0]}", "Authorization")
    if isinstance(spec, BasicAuth):
        if ":" in spec.username:
            raise ConfigError("a basic auth username cannot contain ':'", "auth.username")
        username = spec.username
        return _StaticAuth(
            secrets, (spec.secret,), lambda v: _basic((username, v[0])), "Authorization"
        )
    if isinstance(spec, OAuth2Auth):
        return OAuth2ClientCredentials(spec, secrets, transport)
    if isinstance(spec, JwtAuth):
        return JwtSigner(spec, secrets)
    if isinstance(spec, MtlsAuth):
        return MutualTls(spec, secrets)
    raise ConfigError(f"unsupported auth type {type(spec).__name__}", "auth")
