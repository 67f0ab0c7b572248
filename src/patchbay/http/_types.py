"""Requests and responses as plain data: built without I/O, sent by a transport."""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from typing import Any, Protocol

import msgspec

from patchbay._errors import UpstreamUnavailable

_decode = msgspec.json.Decoder().decode


class Request(msgspec.Struct, frozen=True, gc=False):
    """One HTTP request to an integration, fully built and safe to send.

    A frozen msgspec Struct: several are built for every upstream request (built, then with
    credentials), and a Struct builds several times faster than a frozen dataclass. It holds
    no references back to itself, so the cycle collector need not track it (`gc=False`).
    """

    method: str
    url: str  # absolute; always under the integration's base URL
    path_template: str  # the declared template, for logs and metrics (never the filled path)
    integration: str
    tool: str
    headers: Mapping[str, str] = msgspec.field(default_factory=dict)
    query: tuple[tuple[str, str], ...] = ()
    json: Any = None
    has_body: bool = False
    idempotency_key: str | None = None
    form: tuple[tuple[str, str], ...] | None = None  # a urlencoded body (OAuth2 token requests)
    tls: ssl.SSLContext | None = None  # client TLS (mTLS), set by the authenticator

    def with_headers(self, extra: Mapping[str, str]) -> Request:
        """A copy with more headers (auth, version, idempotency)."""
        return self._copy({**self.headers, **extra}, self.query)

    def with_query(self, extra: tuple[tuple[str, str], ...]) -> Request:
        """A copy with more query parameters (api keys sent in the query)."""
        return self._copy(self.headers, self.query + extra)

    def _copy(self, headers: Mapping[str, str], query: tuple[tuple[str, str], ...]) -> Request:
        # Direct construction: a generic replace costs more on every request.
        return Request(
            self.method, self.url, self.path_template, self.integration, self.tool, headers,
            query, self.json, self.has_body, self.idempotency_key, self.form, self.tls,
        )  # fmt: skip

    @property
    def is_write(self) -> bool:
        """Whether the method may change something upstream."""
        return self.method not in ("GET", "HEAD", "OPTIONS")


class Response(msgspec.Struct, frozen=True, gc=False):
    """An upstream answer, read in full (a Struct for the same reasons as Request)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed_ms: float = 0.0

    def json(self) -> Any:
        """The body as JSON; an unreadable body is an UpstreamUnavailable, never a crash."""
        if not self.body:
            return None
        try:
            return _decode(self.body)
        except msgspec.DecodeError:
            pass  # what msgspec refuses and Python's json reads: NaN, a BOM, huge integers
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UpstreamUnavailable(
                "The system answered with something unreadable.", status_code=self.status
            ) from exc

    def header(self, name: str) -> str | None:
        """A header, case-insensitively."""
        lname = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lname:
                return value
        return None


class Transport(Protocol):
    """Sends one request; raises TransportError on network failure, TimeoutError on timeout."""

    async def send(self, request: Request, timeout_s: float) -> Response:
        """Send `request`, giving up after `timeout_s` seconds."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class TransportError(Exception):
    """The request did not get an HTTP answer (refused, reset, DNS, TLS)."""
