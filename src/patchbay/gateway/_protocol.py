"""uvicorn's HTTP protocols with a read deadline, and each answer written in one go.

uvicorn bounds only the idle time between requests (`timeout_keep_alive`): a client that
connects and sends nothing, sends half its headers, or trickles its body holds a connection,
its buffers and a task for as long as it likes. Here every request must arrive whole, headers
and body, within `read_timeout_s` of its first byte (of the connection, for the first request),
or the connection is closed. It lives in the protocol because only there are the first byte
and the end of a request's body both seen, on every route, before any app code runs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # optional speed-up, measured in bench/gateway.py; the gateway works without it
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - a dependency where wheels exist
    httptools = None  # type: ignore[assignment]

__all__ = ["MAX_HEAD_BYTES", "protocol_class"]

log = logging.getLogger("patchbay.gateway")

# A request line and headers past this are refused (431): real ones are a few hundred bytes.
MAX_HEAD_BYTES = 64 * 1024
_TOO_LARGE_BODY = (
    b'{"error":{"code":"headers_too_large","message":"The request headers are over 64 KiB."}}\n'
)
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_TOO_LARGE_BODY), _TOO_LARGE_BODY)
)


class _OneWrite:
    """A transport whose writes in one turn of the loop leave together.

    uvicorn writes a response's head and its body separately, each a system call and, with
    TCP_NODELAY, a packet the caller wakes up for; an answer sent in one turn of the loop
    (every tool-call answer) now leaves as one write.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        """Queue `data` to leave at the end of this turn of the loop."""
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        """Send what is queued now."""
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        """Send what is queued, then close."""
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _drop_unread(cycle: Any) -> None:
    # Body bytes that arrived before the app answered without reading them (a 401 at the
    # door): uvicorn keeps them until the connection's next request, here they go now.
    if cycle is not None and cycle.body:
        cycle.body = bytearray()


class _ReadDeadline:
    """The deadline by which the request being read must have arrived whole."""

    read_timeout_s = 10.0
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    _deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.read_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _waiting_on_us(self) -> bool:
        """Whether the request is not arriving because this side stopped reading it."""
        return False

    def _expired(self) -> None:
        self._deadline = None
        if self._waiting_on_us():
            self._arm()
            return
        if not self.transport.is_closing():
            # Never the request's content: only that it was too slow.
            log.info("closed a connection whose request did not arrive in %ss", self.read_timeout_s)
            self.transport.close()


if httptools is not None:

    class _HttpTools(_ReadDeadline, HttpToolsProtocol):
        """uvicorn's httptools protocol with the read deadline, writing answers in one go."""

        _head = 0  # bytes received since the request being read began
        _in_head = True  # its headers are not complete yet

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(cast(asyncio.Transport, _OneWrite(transport)))
            self._arm()  # a connection that never sends a byte is closed too

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._in_head:
                self._head += len(data)
                if self._head > MAX_HEAD_BYTES and not self.transport.is_closing():
                    self.transport.write(_TOO_LARGE)
                    self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._disarm()  # what the app does next has its own budget
            self._head, self._in_head = 0, True

        def on_response_complete(self) -> None:
            _drop_unread(self.cycle)
            super().on_response_complete()

        def _waiting_on_us(self) -> bool:
            # A pipelined request is not read on while the one before it is being answered.
            return bool(self.pipeline)


class _H11(_ReadDeadline, H11Protocol):
    """uvicorn's h11 protocol with the read deadline (h11 bounds the head's size itself)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        _drop_unread(self.cycle)
        super().on_response_complete()

    def handle_events(self) -> None:
        super().handle_events()
        state = self.conn.their_state
        partial = bool(self.conn.trailing_data[0])
        if state is h11.SEND_BODY or (state is h11.IDLE and partial):
            self._arm()
        elif state is not h11.IDLE or self.cycle is not None:
            # The request is whole (or the connection is done); an idle keep-alive connection
            # is uvicorn's `timeout_keep_alive`'s to close.
            self._disarm()


def protocol_class(http: str, read_timeout_s: float) -> str | type[asyncio.Protocol]:
    """uvicorn's `http` setting: httptools (`auto`) or h11, with the read deadline.

    Any other name is handed to uvicorn as it is, without the deadline.
    """
    base: type[_ReadDeadline]
    if httptools is not None and http in ("auto", "httptools"):
        base = _HttpTools
    elif http in ("auto", "h11"):
        base = _H11
    else:
        return http
    return cast(
        type[asyncio.Protocol], type(base.__name__, (base,), {"read_timeout_s": read_timeout_s})
    )
