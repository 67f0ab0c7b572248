"""HTTP/1.1 on the wire for HttptoolsTransport: an origin's lines, a request's head and body."""

from __future__ import annotations

import base64
import json
import re
import string
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import NamedTuple
from urllib.parse import quote, unquote, urlencode, urlsplit

from patchbay.http._build import CONTROL
from patchbay.http._transport import _where
from patchbay.http._types import ConnectError, Request

try:
    _VERSION = version("patchbay")
except PackageNotFoundError:  # running from a source tree that was never installed
    _VERSION = "0"

_DEFAULTS = f"Accept: */*\r\nUser-Agent: patchbay/{_VERSION}\r\n"
_ACCEPT = "Accept: */*\r\n"
_USER_AGENT = f"User-Agent: patchbay/{_VERSION}\r\n"
_JSON = "application/json"
_FORM = "application/x-www-form-urlencoded"
_FRAMING = frozenset({"content-length", "transfer-encoding"})
_NO_NAMES: frozenset[str] = frozenset()
_EMPTY_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_UNRESERVED = string.ascii_letters + string.digits + "-._~"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BIG_BODY = 1 << 16  # from here on the body is written on its own rather than copied once more
# CONTROL but CR and LF, which end every header line and are counted instead
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class Origin(NamedTuple):
    """Where to connect, and the Host (and URL credentials) lines of every request there."""

    scheme: str
    host: str  # what to connect to: IDNA-encoded, no brackets
    port: int
    host_line: str
    auth_line: str  # Basic auth for credentials in the URL, else empty


def parse_origin(base: str) -> Origin:
    """The origin of a base URL; ValueError for one that cannot be sent to."""
    parts = urlsplit(base)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"unsupported URL scheme {scheme!r}")
    host = parts.hostname
    if not host:
        raise ValueError("the URL has no host")
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    port = parts.port or _DEFAULT_PORTS[scheme]
    if not host.isprintable() or " " in host:
        raise ValueError("the URL's host has a forbidden character")
    shown = f"[{host}]" if ":" in host else host
    if port != _DEFAULT_PORTS[scheme]:
        shown = f"{shown}:{port}"
    auth = ""
    if parts.username is not None:
        # credentials in the base URL are sent the way aiohttp sends them: Basic auth
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = f"Authorization: Basic {base64.b64encode(pair.encode()).decode()}\r\n"
    return Origin(scheme, host, port, f"Host: {shown}\r\n", auth)


def encode(request: Request, origin: Origin, target: str) -> bytes | list[bytes]:
    """The request line, headers and body on the wire."""
    if request.query:
        query = "&".join([f"{_pct(k)}={_pct(v)}" for k, v in request.query])
        target = f"{target}&{query}" if "?" in target else f"{target}?{query}"
    given = request.headers
    names: frozenset[str] | set[str]
    if given:
        names = {name.lower() for name in given}
        if names & _FRAMING:
            # the transport frames the body itself
            given = {k: v for k, v in given.items() if k.lower() not in _FRAMING}
        lines = "".join([f"{k}: {v}\r\n" for k, v in given.items()])
        count = len(given)
        if lines.count("\r") != count or lines.count("\n") != count or _CONTROL.search(lines):
            _refuse(request, given)
    else:
        names, lines = _NO_NAMES, ""
    # a caller's own Host or Authorization header replaces the one made from the URL
    host = ("" if "host" in names else origin.host_line) + (
        "" if "authorization" in names else origin.auth_line
    )
    if "accept" in names or "user-agent" in names:
        extra = ("" if "accept" in names else _ACCEPT) + (
            "" if "user-agent" in names else _USER_AGENT
        )
    else:
        extra = _DEFAULTS
    body: bytes | None = None
    if request.content is not None:
        body = request.content  # sent as it is; its Content-Type comes with the headers
        if "content-type" not in names:
            extra += "Content-Type: application/octet-stream\r\n"
    elif request.form is not None:
        body = urlencode(request.form).encode()
        if "content-type" not in names:
            extra += f"Content-Type: {_FORM}\r\n"
    elif request.has_body:
        body = json.dumps(request.json, separators=(",", ":")).encode()
        if "content-type" not in names:
            extra += f"Content-Type: {_JSON}\r\n"
    if body is not None:
        extra += f"Content-Length: {len(body)}\r\n"
    elif request.method in _EMPTY_BODY_METHODS:
        extra += "Content-Length: 0\r\n"
    head = f"{request.method} {target} HTTP/1.1\r\n{host}{lines}{extra}\r\n".encode()
    if body is None:
        return head
    if len(body) < _BIG_BODY:
        return head + body
    return [head, body]


def _pct(text: str) -> str:
    # most keys and values need no escaping: checking that is several times cheaper than quote
    return text if not text.rstrip(_UNRESERVED) else quote(text, safe="")


def _refuse(request: Request, headers: Mapping[str, str]) -> None:
    for key, value in headers.items():
        if CONTROL.search(key) or CONTROL.search(value):
            # request building refuses these already: this is the last line, and nothing left
            raise ConnectError(
                f"{_where(request)}: header {key!r} has a forbidden character (a control character)"
            )
