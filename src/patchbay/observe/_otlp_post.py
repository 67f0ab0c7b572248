"""POSTs of OTLP exports over one kept-alive HTTP/1.1 connection, from the exporter's thread.

Written on a socket and the httptools parser rather than with `http.client`: at 64 tool calls
in flight, `http.client`'s Python-level request and header handling cost the event loop's
process more CPU per export than all the export's spans did. One request at a time; the
answer's body is read and dropped (a collector's ExportTraceServiceResponse).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

import httptools

from patchbay.http._build import CONTROL
from patchbay.spec._base import HEADER_NAME
from patchbay.spec._ops import OTLP_OWN_HEADERS

__all__ = ["Poster"]

_PATH_SAFE = "!#$%&'()*+,/:;=?@[]~"  # reserved and already-escaped characters stay as written
_MAX_ANSWER = 1 << 20  # bytes read of one answer before the connection is given up
_SEND_BUFFER = 1 << 20  # bytes; an export of 512 spans is about 150 KB


class _Answer:
    """httptools callbacks: whether the answer's headers, and all of it, have arrived, and
    whether the connection may carry the next request (known only inside the callbacks)."""

    __slots__ = ("complete", "headers_done", "keep_alive", "parser")

    def __init__(self) -> None:
        self.headers_done = self.complete = self.keep_alive = False
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()


class Poster:
    """POSTs bodies to one URL, the same headers each time, over a connection kept alive.

    Raises ValueError at construction for a URL that is not http(s) or a header that cannot
    be sent (named, never shown: header values are the collector's credentials). `post`
    raises OSError (timeouts included) or `httptools.HttpParserError` when no answer came.
    """

    def __init__(self, url: str, headers: Mapping[str, str], timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the OTLP endpoint must be an http(s) URL with a host")
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls is not None else 80)
        self._timeout = timeout_s
        shown = self._host if self._host.isascii() else self._host.encode("idna").decode()
        if ":" in shown:
            shown = f"[{shown}]"
        if parts.port is not None:
            shown = f"{shown}:{parts.port}"
        target = quote(parts.path or "/", safe=_PATH_SAFE)
        if parts.query:
            target += "?" + quote(parts.query, safe=_PATH_SAFE)
        lines = [f"POST {target} HTTP/1.1", f"Host: {shown}"]
        for name, value in headers.items():
            if not HEADER_NAME.fullmatch(name) or name.lower() in OTLP_OWN_HEADERS:
                raise ValueError(f"OTLP header {name!r} cannot be sent")
            if CONTROL.search(value):
                raise ValueError(f"OTLP header {name!r} has a control character in its value")
            try:
                value.encode("latin-1")
            except UnicodeEncodeError:  # HTTP/1.1 header values are Latin-1 at most
                raise ValueError(
                    f"OTLP header {name!r} has a character that HTTP cannot carry"
                ) from None
            lines.append(f"{name}: {value}")
        lines.append("Content-Length: ")
        self._head = "\r\n".join(lines).encode("latin-1")
        self._sock: socket.socket | None = None

    def post(self, body: bytes) -> int:
        """Send one POST and read its answer to the end; the answer's status."""
        sock = self._sock
        if sock is None:
            sock = self._sock = self._connect()
        sock.sendall(b"%s%d\r\n\r\n%s" % (self._head, len(body), body))
        answer = _Answer()
        parser = answer.parser
        read = 0
        while not answer.complete:
            data = sock.recv(65536)
            if not data:
                if answer.headers_done:  # an answer whose end is the connection's
                    break
                raise ConnectionError("the collector closed the connection without answering")
            read += len(data)
            if read > _MAX_ANSWER:  # an export's answer is a few bytes: this is not a collector
                self.close()
                raise ConnectionError("the collector's answer is too large")
            parser.feed_data(data)
        status: int = parser.get_status_code()
        if not answer.keep_alive:
            self.close()
        return status

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Room for a whole export: sent in one system call, not in pieces between which
            # the thread waits for the collector and then for the interpreter lock.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
            if self._tls is not None:
                return self._tls.wrap_socket(sock, server_hostname=self._host)
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        """Close the connection (the next post opens another)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
