"""`vault:PATH#KEY`: a key of a HashiCorp Vault / OpenBao KV version 2 secret.

Logs in with a token reference or AppRole (role_id and secret_id references). An AppRole token
is renewed once two thirds of its lease have passed and logged in again when it cannot be
renewed or is refused; a refused static token is re-read from its reference once.

hvac (the maintained Vault client) is synchronous: each request runs in a thread, one at a
time per provider, and hvac itself is imported on the first lookup, not at start-up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from patchbay._errors import SecretError
from patchbay.http._secrets import SecretResolver
from patchbay.spec._secrets import VaultSpec

if TYPE_CHECKING:
    import hvac  # type: ignore[import-untyped]

__all__ = ["VaultProvider"]


class VaultProvider:
    """Reads KV v2 secrets from one Vault server as the config's `secrets.vault` says."""

    def __init__(
        self,
        spec: VaultSpec,
        resolver: SecretResolver,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._spec = spec
        self._resolver = resolver
        self._clock = clock
        self._lock = asyncio.Lock()
        self._client: hvac.Client | None = None
        self._renew_at = float("inf")  # when the AppRole token should be renewed
        self._expires_at = float("inf")  # when it stops working
        self.logins = 0  # AppRole logins (and static token reads) so far
        self.renewals = 0  # AppRole token renewals so far

    async def resolve(self, name: str) -> str:
        """The value of KEY in the secret at PATH (`name` is `PATH#KEY`)."""
        path, _, key = name.partition("#")
        path = path.strip("/")
        if not path or not key:
            raise SecretError(f"secret vault:{name} must be vault:PATH#KEY")
        async with self._lock:
            data = await self._read(path, name)
        if key not in data:
            raise SecretError(f"secret vault:{name}: the secret has no key {key!r}")
        value = data[key]
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise SecretError(f"secret vault:{name}: the key holds {type(value).__name__}")
        return str(value)

    async def _read(self, path: str, name: str) -> dict[str, Any]:
        # Imported on first use: hvac brings requests, which `patchbay --help` must not load.
        import hvac.exceptions  # type: ignore[import-untyped]

        client = await self._logged_in()
        try:
            return await asyncio.to_thread(self._read_sync, client, path)
        except hvac.exceptions.InvalidPath:
            where = f"{self._spec.mount}/{path}"
            raise SecretError(f"secret vault:{name}: Vault has no secret at {where}") from None
        except hvac.exceptions.Forbidden:
            pass  # refused: handled below, by logging in again once
        # Refused: the token expired, was revoked or rotated; log in (or re-read it) once more.
        self._client = None
        if self._spec.token is not None:
            self._resolver.invalidate(self._spec.token)
        client = await self._logged_in()
        try:
            return await asyncio.to_thread(self._read_sync, client, path)
        except hvac.exceptions.InvalidPath:
            raise SecretError(f"secret vault:{name}: Vault has no secret there") from None
        except hvac.exceptions.Forbidden:
            raise SecretError(
                f"secret vault:{name}: Vault refused the read (403); check the token's policy"
            ) from None

    def _read_sync(self, client: hvac.Client, path: str) -> dict[str, Any]:
        answer = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=self._spec.mount, raise_on_deleted_version=True
        )
        data = answer["data"]["data"]
        return data if isinstance(data, dict) else {}

    async def _logged_in(self) -> hvac.Client:
        import hvac  # lazy, as above
        import hvac.exceptions

        now = self._clock()
        client = self._client
        if client is not None and now < self._renew_at:
            return client
        if (
            client is not None
            and now < self._expires_at
            and await asyncio.to_thread(self._renew_sync, client)
        ):
            return client
        spec = self._spec
        client = hvac.Client(url=spec.url, namespace=spec.namespace, timeout=spec.timeout_s)
        self.logins += 1
        if spec.token is not None:
            client.token = (await self._resolver.resolve(spec.token)).reveal()
            self._renew_at = self._expires_at = float("inf")
        else:
            assert spec.approle is not None  # the spec requires one of the two
            role_id = (await self._resolver.resolve(spec.approle.role_id)).reveal()
            secret_id = (await self._resolver.resolve(spec.approle.secret_id)).reveal()
            try:
                answer = await asyncio.to_thread(
                    client.auth.approle.login,
                    role_id=role_id,
                    secret_id=secret_id,
                    mount_point=spec.approle.mount,
                )
            except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
                raise SecretError(
                    "Vault refused the AppRole login (check secrets.vault.approle)"
                ) from None
            self._lease(answer)
        self._client = client
        return client

    def _renew_sync(self, client: hvac.Client) -> bool:
        """Extend the AppRole token's lease; False when it cannot be (log in again instead)."""
        import hvac.exceptions  # type: ignore[import-untyped]

        try:
            answer = client.auth.token.renew_self()
        except (hvac.exceptions.VaultError, OSError):
            return False
        self._lease(answer)
        self.renewals += 1
        return True

    def _lease(self, answer: dict[str, Any]) -> None:
        auth = answer.get("auth") or {}
        lease = float(auth.get("lease_duration") or 0)
        now = self._clock()
        if lease <= 0:  # a token without expiry
            self._renew_at = self._expires_at = float("inf")
            return
        self._expires_at = now + lease
        # non-renewable: log in again near the end instead
        self._renew_at = now + lease * 2 / 3 if auth.get("renewable") else now + lease * 0.9
