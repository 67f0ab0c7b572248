"""Who may call the gateway: a bearer token, per-platform shared secrets, Retell's signature.

Every secret is a reference (`env:NAME`, `file:PATH`, ...) resolved once at startup; values
live only inside `Secret` and are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping

from patchbay.gateway._http import DoorError, Surface
from patchbay.http import Secret, SecretResolver
from patchbay.spec import GatewayAuth

__all__ = [
    "RETELL_TOLERANCE_MS",
    "Credentials",
    "sign_retell",
    "verify_retell_signature",
]

# retell-sdk's verify(): a signature older or newer than five minutes is refused.
RETELL_TOLERANCE_MS = 5 * 60 * 1000
_RETELL_SIGNATURE = re.compile(r"v=(\d+),d=(.*)")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _retell_digest(body: bytes, timestamp: int, api_key: str) -> str:
    return hmac.new(api_key.encode(), body + str(timestamp).encode(), hashlib.sha256).hexdigest()


def sign_retell(body: bytes, api_key: str, timestamp_ms: int | None = None) -> str:
    """An `X-Retell-Signature` value for `body`, as Retell sends it: `v=<ms>,d=<hex>`."""
    ts = _now_ms() if timestamp_ms is None else timestamp_ms
    return f"v={ts},d={_retell_digest(body, ts, api_key)}"


def verify_retell_signature(
    body: bytes,
    signature: str | None,
    api_key: str,
    *,
    now_ms: int | None = None,
    tolerance_ms: int = RETELL_TOLERANCE_MS,
) -> bool:
    """Whether `signature` is Retell's for this raw body and still fresh.

    The same check as retell-sdk's `verify(body, api_key, signature)`: HMAC-SHA256 keyed with the
    API key over the body followed by the decimal millisecond timestamp, hex encoded, in a header
    `v=<timestamp>,d=<digest>`, refused when the timestamp is more than five minutes away.
    Hand-written because the SDK brings a whole HTTP client for these ten lines.
    """
    if not signature:
        return False
    match = _RETELL_SIGNATURE.search(signature)
    if match is None:
        return False
    stamp = int(match.group(1))
    now = _now_ms() if now_ms is None else now_ms
    if abs(now - stamp) > tolerance_ms:
        return False
    expected = _retell_digest(body, stamp, api_key)
    return hmac.compare_digest(expected.encode(), match.group(2).encode())


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class Credentials:
    """The gateway's resolved secrets, and the decision whether a request may come in."""

    def __init__(
        self,
        spec: GatewayAuth,
        resolver: SecretResolver,
        *,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.spec = spec
        self._resolver = resolver
        self._clock_ms = clock_ms
        self._loaded = False
        self.bearer: Secret | None = None
        self.vapi: Secret | None = None
        self.retell: Secret | None = None
        self.elevenlabs: Secret | None = None

    @property
    def loaded(self) -> bool:
        """Whether `load()` has resolved the references."""
        return self._loaded

    async def load(self) -> None:
        """Resolve every configured reference; a missing secret raises SecretError."""
        if self._loaded:
            return
        s = self.spec
        self.bearer = await self._resolve(s.bearer)
        self.vapi = await self._resolve(s.vapi_secret)
        self.retell = await self._resolve(s.retell_api_key)
        self.elevenlabs = await self._resolve(s.elevenlabs_secret)
        self._loaded = True

    async def _resolve(self, ref: str | None) -> Secret | None:
        return None if ref is None else await self._resolver.resolve(ref)

    @property
    def accepts_anyone(self) -> bool:
        """Whether the config opened the gateway to unauthenticated callers."""
        return self.spec.open

    @property
    def configured(self) -> bool:
        """Whether any way in exists (a secret or `open`)."""
        s = self.spec
        return s.open or any((s.bearer, s.vapi_secret, s.retell_api_key, s.elevenlabs_secret))

    def check(self, surface: Surface, headers: Mapping[str, str], body: bytes = b"") -> None:
        """Let the request in, or raise a 401 DoorError saying what is missing (no values)."""
        if surface is Surface.RETELL and self.retell is not None:
            # A configured signature is always required: a bearer token does not replace it.
            signature = headers.get("x-retell-signature")
            if not signature:
                raise DoorError(401, "unauthorized", "X-Retell-Signature is missing.")
            if not verify_retell_signature(
                body, signature, self.retell.reveal(), now_ms=self._clock_ms()
            ):
                raise DoorError(401, "unauthorized", "X-Retell-Signature is wrong or stale.")
            return
        if surface is Surface.VAPI and self.vapi is not None:
            given = headers.get("x-vapi-secret") or _bearer(headers)
            if given is not None and self.vapi.matches(given):
                return
        if surface is Surface.ELEVENLABS and self.elevenlabs is not None:
            given = headers.get("x-elevenlabs-secret") or _bearer(headers)
            if given is not None and self.elevenlabs.matches(given):
                return
        if self.bearer is not None:
            token = _bearer(headers)
            if token is not None and self.bearer.matches(token):
                return
        if self.spec.open:
            return
        if not self.configured:
            raise DoorError(
                401,
                "unauthorized",
                "The gateway accepts no callers: configure gateway.auth (bearer or a platform "
                "secret), or set gateway.auth.open to true.",
            )
        raise DoorError(401, "unauthorized", "Missing or wrong credentials.")
