"""Who may call the gateway: a bearer token, per-platform shared secrets, Retell's signature.

Each credential belongs to the operator or to one tenant, whose requests then run as it.

Every secret is a reference (`env:NAME`, `file:PATH`, `vault:...`, ...) resolved at startup and
re-read in the background when its TTL (`secrets.ttl_s`) passes; a credential may list several
references while it is rotated, and each of them is accepted. Values live only inside `Secret`
and are compared in constant time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from patchbay._errors import SecretError
from patchbay.gateway._http import DoorError, Surface
from patchbay.http import Secret, SecretResolver
from patchbay.spec import GatewayAuth

__all__ = [
    "ANYONE",
    "OPERATOR",
    "RETELL_TOLERANCE_MS",
    "Caller",
    "Credentials",
    "retell_signature_shaped",
    "sign_retell",
    "verify_retell_signature",
]

log = logging.getLogger("patchbay.gateway")

# retell-sdk's verify(): a signature older or newer than five minutes is refused.
RETELL_TOLERANCE_MS = 5 * 60 * 1000
# At most 16 digits (milliseconds until the year 318857): int() of thousands of digits raises.
_RETELL_SIGNATURE = re.compile(r"v=(\d{1,16}),d=(.*)")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _retell_digest(body: bytes, timestamp: int, api_key: str) -> str:
    return hmac.new(api_key.encode(), body + str(timestamp).encode(), hashlib.sha256).hexdigest()


def sign_retell(body: bytes, api_key: str, timestamp_ms: int | None = None) -> str:
    """An `X-Retell-Signature` value for `body`, as Retell sends it: `v=<ms>,d=<hex>`."""
    ts = _now_ms() if timestamp_ms is None else timestamp_ms
    return f"v={ts},d={_retell_digest(body, ts, api_key)}"


def retell_signature_shaped(signature: str | None) -> bool:
    """Whether `signature` looks like Retell's (checked before the body it covers is read)."""
    return bool(signature) and _RETELL_SIGNATURE.search(signature or "") is not None


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


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request came in as: the operator, one tenant, or anyone (an `open` gateway)."""

    tenant: str | None = None  # the tenant its credential is bound to; None: may name any
    authenticated: bool = True  # False: let in by `open` without a credential


OPERATOR = Caller()
ANYONE = Caller(authenticated=False)
_DOORS = ("bearer", "vapi_secret", "retell_api_key", "elevenlabs_secret")
# The headers a platform's own secret may come in (an `Authorization: Bearer` works as well).
VAPI_SECRET_HEADER = "X-Vapi-Secret"
ELEVENLABS_SECRET_HEADER = "X-ElevenLabs-Secret"


def _fingerprint(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def _refs(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class Credentials:
    """The gateway's resolved secrets, and the decision who a request comes in as.

    The top-level secrets are the operator's, whose requests may name any tenant; those under
    `tenants` bind a request to their tenant.
    """

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
        # (door, SHA-256 of the value) -> the secret and whose it is: found by digest, so the
        # cost does not grow with the number of tenants; the match is confirmed in constant time.
        self._known: dict[tuple[str, bytes], tuple[Secret, Caller]] = {}
        self._retell: list[tuple[Secret, Caller]] = []  # a signature is tried with each key
        # Re-read in the background once the shortest TTL of the references passes.
        self._refresh_s: float | None = None
        self._refresh_at = float("inf")
        self._refreshing: asyncio.Task[None] | None = None

    @property
    def loaded(self) -> bool:
        """Whether `load()` has resolved the references."""
        return self._loaded

    async def load(self) -> None:
        """Resolve every configured reference; a missing or shared secret raises SecretError."""
        if self._loaded:
            return
        await self._read(fresh=False)
        self._loaded = True

    async def _read(self, *, fresh: bool) -> None:
        s = self.spec
        owners = [("gateway.auth", s, OPERATOR)] + [
            (f"gateway.auth.tenants.{name}", t, Caller(name)) for name, t in s.tenants.items()
        ]
        known: dict[tuple[str, bytes], tuple[Secret, Caller]] = {}
        retell: list[tuple[Secret, Caller]] = []
        seen: dict[bytes, tuple[str, Caller]] = {}
        ttls: list[float] = []
        for where, holder, who in owners:
            for door in _DOORS:
                for ref in _refs(getattr(holder, door)):
                    ttl = self._resolver.ttl_of(ref)
                    if ttl is not None:
                        ttls.append(ttl)
                    secret = await self._resolver.resolve(ref, fresh=fresh)
                    self._add(secret, f"{where}.{door}", door, who, seen, known, retell)
        self._known, self._retell = known, retell
        self._refresh_s = min(ttls, default=None)
        if self._refresh_s is not None:
            self._refresh_at = time.monotonic() + self._refresh_s

    @staticmethod
    def _add(
        secret: Secret,
        place: str,
        door: str,
        who: Caller,
        seen: dict[bytes, tuple[str, Caller]],
        known: dict[tuple[str, bytes], tuple[Secret, Caller]],
        retell: list[tuple[Secret, Caller]],
    ) -> None:
        """Index one credential value, refusing one that another caller holds too."""
        fingerprint = _fingerprint(secret.reveal())
        other = seen.setdefault(fingerprint, (place, who))
        if other[1] != who:
            # One value for two callers would make the request's tenant a guess.
            raise SecretError(
                f"{place} resolves to the same value as {other[0]}; "
                "each tenant needs credentials of its own"
            )
        if door == "retell_api_key":
            retell.append((secret, who))
        else:
            known[(door, fingerprint)] = (secret, who)

    async def refresh(self) -> None:
        """Re-read every reference now (a TTL passed); on failure keep the current values."""
        try:
            await self._read(fresh=True)
        except SecretError as exc:
            log.warning("gateway credentials not re-read, the current ones stay: %s", exc)
            if self._refresh_s is not None:
                self._refresh_at = time.monotonic() + min(self._refresh_s, 10.0)

    def _maybe_refresh(self) -> None:
        if time.monotonic() < self._refresh_at or self._refreshing is not None:
            return
        self._refresh_at = float("inf")  # set again when the refresh ends
        task = asyncio.get_running_loop().create_task(self.refresh())
        self._refreshing = task
        task.add_done_callback(lambda _: setattr(self, "_refreshing", None))

    @property
    def accepts_anyone(self) -> bool:
        """Whether the config opened the gateway to unauthenticated callers."""
        return self.spec.open

    @property
    def configured(self) -> bool:
        """Whether any way in exists (a secret or `open`)."""
        s = self.spec
        holders = (s, *s.tenants.values())
        return s.open or any(getattr(h, door) for h in holders for door in _DOORS)

    def _find(self, door: str, given: str | None) -> Caller | None:
        if given is None:
            return None
        hit = self._known.get((door, _fingerprint(given)))
        return hit[1] if hit is not None and hit[0].matches(given) else None

    def check(self, surface: Surface, headers: Mapping[str, str], body: bytes = b"") -> Caller:
        """Who the request comes in as, or a 401 DoorError saying what is missing (no values)."""
        if self._refresh_s is not None:
            self._maybe_refresh()  # the values in hand answer this request meanwhile
        if surface is Surface.RETELL and self._retell:
            # A configured signature is always required: a bearer token does not replace it.
            signature = headers.get("x-retell-signature")
            if not signature:
                raise DoorError(401, "unauthorized", "X-Retell-Signature is missing.")
            now = self._clock_ms()
            for secret, who in self._retell:
                if verify_retell_signature(body, signature, secret.reveal(), now_ms=now):
                    return who
            raise DoorError(401, "unauthorized", "X-Retell-Signature is wrong or stale.")
        found: Caller | None = None
        if surface is Surface.VAPI:
            given = headers.get(VAPI_SECRET_HEADER.lower()) or _bearer(headers)
            found = self._find("vapi_secret", given)
        elif surface is Surface.ELEVENLABS:
            given = headers.get(ELEVENLABS_SECRET_HEADER.lower()) or _bearer(headers)
            found = self._find("elevenlabs_secret", given)
        if found is None:
            found = self._find("bearer", _bearer(headers))
        if found is not None:
            return found
        if self.spec.open:
            return ANYONE
        if not self.configured:
            raise DoorError(
                401,
                "unauthorized",
                "The gateway accepts no callers: configure gateway.auth (bearer or a platform "
                "secret), or set gateway.auth.open to true.",
            )
        raise DoorError(401, "unauthorized", "Missing or wrong credentials.")

    def tenant(self, caller: Caller, *named: str | None) -> str | None:
        """The tenant a request runs as: its credential's, else the first one it names.

        A tenant's credential naming another tenant is refused (403); so is a caller without a
        credential (`open`) naming a tenant that has credentials of its own (401).
        """
        if caller.tenant is not None:
            if any(n is not None and n != caller.tenant for n in named):
                raise DoorError(
                    403,
                    "forbidden",
                    f"This credential belongs to tenant {caller.tenant!r}; it cannot act for "
                    "another tenant.",
                )
            return caller.tenant
        chosen = next((n for n in named if n is not None), None)
        if chosen is not None and not caller.authenticated and chosen in self.spec.tenants:
            raise DoorError(
                401,
                "unauthorized",
                "That tenant has gateway credentials of its own: send one of them.",
            )
        return chosen
