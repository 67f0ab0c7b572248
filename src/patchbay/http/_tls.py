"""mTLS: a client certificate, key and CA from secret references, as an SSL context.

The authenticator attaches the context to each request (`Request.tls`); the transport connects
with it, and both transports pool connections per context, so no other request shares them.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile
from pathlib import Path

import msgspec

from patchbay._errors import SecretError
from patchbay.http._secrets import SecretResolver
from patchbay.http._types import Request
from patchbay.spec._auth import MtlsAuth

__all__ = ["MutualTls"]


class MutualTls:
    """A client certificate: requests carry an SSL context the transport connects with."""

    def __init__(self, spec: MtlsAuth, secrets: SecretResolver) -> None:
        for ref in (spec.cert, spec.key, spec.ca):
            if ref is not None:
                secrets.check(ref)
        self._spec = spec
        self._secrets = secrets
        self._context: ssl.SSLContext | None = None
        self._lock = asyncio.Lock()

    async def context(self) -> ssl.SSLContext:
        """The client TLS context, built once from the cert, key and CA references."""
        if self._context is None:
            async with self._lock:
                if self._context is None:
                    spec = self._spec
                    cert = (await self._secrets.resolve(spec.cert)).reveal()
                    key = (await self._secrets.resolve(spec.key)).reveal()
                    ca = (await self._secrets.resolve(spec.ca)).reveal() if spec.ca else None
                    self._context = await asyncio.to_thread(_tls_context, cert, key, ca, spec)
        return self._context

    async def apply(self, request: Request) -> Request:
        """The request with the client TLS context attached."""
        return msgspec.structs.replace(request, tls=await self.context())

    async def on_unauthorized(self, request: Request | None = None) -> bool:
        """A certificate is not refreshed by retrying."""
        return False

    async def close(self) -> None:
        """Nothing to release."""


def _tls_context(cert: str, key: str, ca: str | None, spec: MtlsAuth) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
    # ssl can only load a certificate chain from files: write them privately, then delete
    with tempfile.TemporaryDirectory(prefix="patchbay-tls-") as tmp:
        cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        for path, text in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
        try:
            context.load_cert_chain(cert_path, key_path)
        except (ssl.SSLError, ValueError):
            raise SecretError(
                f"secrets {spec.cert} and {spec.key} are not a PEM certificate and its key"
            ) from None
    return context
