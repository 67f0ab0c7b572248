"""A minimal in-process ASGI client: lifespan, and one HTTP request at a time.

Written by hand because httpx (whose ASGITransport would do) is not a dependency, and because
the fuzz must send what a client library refuses to: bytes that are not UTF-8 in header values,
lying Content-Length headers, bodies split into many chunks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Answer:
    """What the app sent back."""

    status: int
    headers: dict[str, str]
    body: bytes


class AsgiClient:
    """Runs an ASGI app's lifespan and sends it requests directly, with no sockets."""

    def __init__(self, app: Any, timeout_s: float = 20.0) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._lifespan: asyncio.Task[None] | None = None
        self._state: dict[str, Any] = {}

    async def __aenter__(self) -> AsgiClient:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self._state}
        self._lifespan = asyncio.create_task(self.app(scope, self._to_app.get, self._from_app.put))
        await self._to_app.put({"type": "lifespan.startup"})
        message = await self._from_app.get()
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the app did not start: {message}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._to_app.put({"type": "lifespan.shutdown"})
        await self._from_app.get()
        if self._lifespan is not None:
            await self._lifespan

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Sequence[tuple[bytes, bytes]] = (),
        *,
        query: bytes = b"",
        chunks: int = 1,
    ) -> Answer:
        """Send one request, its body in `chunks` pieces; the answer (TimeoutError if none)."""
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode("utf-8", "surrogateescape"),
            "root_path": "",
            "query_string": query,
            "headers": [(k.lower(), v) for k, v in headers],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8080),
            "state": dict(self._state),
        }
        size = max(1, -(-len(body) // max(1, chunks)))
        pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
        finished = asyncio.Event()
        status = 0
        answer_headers: dict[str, str] = {}
        parts: list[bytes] = []

        async def receive() -> Message:
            if pieces:
                chunk = pieces.pop(0)
                return {"type": "http.request", "body": chunk, "more_body": bool(pieces)}
            await finished.wait()  # the client stays until the answer is complete
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for k, v in message.get("headers", []):
                    answer_headers[k.decode("latin-1").lower()] = v.decode("latin-1")
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
                if not message.get("more_body", False):
                    finished.set()

        try:
            await asyncio.wait_for(self.app(scope, receive, send), self.timeout_s)
        finally:
            finished.set()
        return Answer(status, answer_headers, b"".join(parts))
