"""Requests and responses as plain data: built without I/O, sent by a transport."""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Mapping
from typing import Any, Protocol

import msgspec

from patchbay._errors import UpstreamUnavailable
from patchbay.spec._base import DEFAULT_MAX_RESPONSE_BYTES

_decode = msgspec.json.Decoder().decode
# a \uD800-\uDFFF escape: Python's json turns a lone one into a str no encoder accepts
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNREADABLE = "The system answered with something unreadable."
# Deeper answers are unreadable: whatever walks them later (response transforms, contract
# checks, body logging) recurses, and no API nests its data this far.
MAX_JSON_DEPTH = 64
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[{]}"))


class Proxy(msgspec.Struct, frozen=True, gc=False):
    """A forward proxy to send one request through (HTTPS by CONNECT); set by the pipeline."""

    host: str
    port: int
    # `Proxy-Authorization` header value (Basic), or None; never shown in a repr
    authorization: str | None = msgspec.field(default=None)

    def __repr__(self) -> str:
        return f"Proxy({self.host!r}, {self.port})"

    @property
    def where(self) -> str:
        """host:port, for messages (never the credentials)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


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
    # the transport reads at most this many decoded bytes of the answer (ResponseTooLarge)
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    # a body sent as it is (text, XML, bytes), with the Content-Type its headers give
    content: bytes | None = None
    proxy: Proxy | None = None  # the forward proxy to go through, if any
    # a POST that changes nothing (a GraphQL query): sent, retried and timed out as a read
    safe: bool = False

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
            self.max_response_bytes, self.content, self.proxy, self.safe,
        )  # fmt: skip

    @property
    def is_write(self) -> bool:
        """Whether the method may change something upstream."""
        return self.method not in ("GET", "HEAD", "OPTIONS") and not self.safe


class Response(msgspec.Struct, frozen=True, gc=False):
    """An upstream answer, read in full (a Struct for the same reasons as Request)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed_ms: float = 0.0

    def json(self) -> Any:
        """The body as JSON; an unreadable body is an UpstreamUnavailable, never a crash."""
        body = self.body
        if not body:
            return None
        try:
            value = _decode(body)
        except msgspec.DecodeError:
            # what msgspec refuses and Python's json reads: NaN, a BOM, lone surrogates
            value = _lenient_json(body, self.status)
        except RecursionError:
            # nested deeper than anything can walk; Python's json would fail the same way
            raise UpstreamUnavailable(_UNREADABLE, status_code=self.status) from None
        if len(body) > 2 * MAX_JSON_DEPTH and not _shallow(body) and _too_deep(value):
            raise UpstreamUnavailable(_UNREADABLE, status_code=self.status)
        return value

    def header(self, name: str) -> str | None:
        """A header, case-insensitively."""
        lname = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lname:
                return value
        return None


def _shallow(body: bytes) -> bool:
    """Whether the body's brackets surely nest no deeper than MAX_JSON_DEPTH (at C speed).

    Innermost pairs are removed a level per pass; brackets inside strings may unbalance that,
    and then only the walk over the decoded value can tell.
    """
    marks = body.translate(_BRACKETS, _NOT_BRACKETS)
    if len(marks) <= 2 * MAX_JSON_DEPTH:
        return True  # too few brackets to nest past it: most answers stop here
    for _ in range(MAX_JSON_DEPTH):
        if not marks:
            return True
        inner = marks.replace(b"()", b"")
        if len(inner) == len(marks):
            return False
        marks = inner
    return not marks


def _too_deep(value: Any) -> bool:
    """Whether containers nest deeper than MAX_JSON_DEPTH (walked, not recursed)."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, list | dict) else []
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        items = node.values() if isinstance(node, dict) else node
        stack.extend((item, depth + 1) for item in items if isinstance(item, list | dict))
    return False


def _lenient_json(body: bytes, status: int) -> Any:
    # Strict UTF-8 (json.loads(bytes) would let encoded surrogates through); the encoding
    # sniffing json.loads does on bytes (a BOM, UTF-16) is kept.
    try:
        text = body.decode(json.detect_encoding(body))
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise UpstreamUnavailable(_UNREADABLE, status_code=status) from exc
    if _SURROGATE_ESCAPE.search(text):
        value = _replace_surrogates(value)
    return value


def _clean(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text)


def _replace_surrogates(value: Any) -> Any:
    """Lone surrogates become U+FFFD, so the answer can be encoded again (walked, not recursed)."""
    if isinstance(value, str):
        return _clean(value)
    root = [value]
    stack: list[list[Any] | dict[str, Any]] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            for i, item in enumerate(node):
                if isinstance(item, str):
                    node[i] = _clean(item)
                elif isinstance(item, list | dict):
                    stack.append(item)
        else:
            for key in list(node):
                item = node[key]
                if isinstance(item, str):
                    item = _clean(item)
                elif isinstance(item, list | dict):
                    stack.append(item)
                fixed = _clean(key)
                if fixed != key:
                    del node[key]
                node[fixed] = item
    return root[0]


class ResponseTooLarge(UpstreamUnavailable):
    """The answer is bigger than the integration's `max_response_bytes`; it was not read.

    Not retryable: asking again brings the same answer. The connection is closed, not reused.
    """

    retryable = False


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


class ConnectError(TransportError):
    """No connection could be made (refused, DNS, TLS handshake): nothing was sent."""
