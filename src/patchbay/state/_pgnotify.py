"""PostgresNotifier: PostgreSQL LISTEN/NOTIFY for replicas that share only a PostgreSQL store.

One connection listens for every channel this process subscribes to; NOTIFY goes through
another. PostgreSQL caps a channel name at 63 bytes and a payload at 8000, so channels are
hashed and a larger message is replaced by a wake-up (`N`) that makes subscribers read the
store, where the message's content already is.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

from patchbay.state._postgres import PostgresStore
from patchbay.state._pubsub import Callback, Subscription, _Handle, _Hub

log = logging.getLogger("patchbay.state")

_MAX_PAYLOAD = 7900  # bytes, under PostgreSQL's 8000
WAKE_UP = b"N"  # "read the store": stands for a message too large to send


class PostgresNotifier:
    """LISTEN/NOTIFY on channels hashed from the store's prefix and the topic."""

    shared = True

    def __init__(self, store: PostgresStore) -> None:
        self._url = store.url
        self._prefix = store.prefix
        self._origin = uuid.uuid4().hex  # 32 characters before each payload: who sent it
        self._hub = _Hub()
        self._names: dict[str, str] = {}  # hashed channel -> topic
        self._listener: Any = None
        self._sender: Any = None
        self._lock = asyncio.Lock()
        self._sending = asyncio.Lock()  # an asyncpg connection runs one statement at a time
        self._closed = False

    def _channel(self, topic: str) -> str:
        name = (self._prefix + topic).encode("utf-8", "surrogatepass")
        return f"patchbay_{hashlib.sha256(name).hexdigest()[:40]}"

    async def _connection(self, which: str) -> Any:
        found = getattr(self, which)
        if found is None or found.is_closed():
            found = await asyncpg.connect(self._url, timeout=5.0)
            if which == "_listener":
                found.add_termination_listener(self._lost)
            setattr(self, which, found)
        return found

    async def publish(self, channel: str, message: bytes) -> None:
        self._hub.deliver(channel, message)
        text = message.decode("utf-8", "replace")
        payload = self._origin + (text if len(message) <= _MAX_PAYLOAD else WAKE_UP.decode())
        try:
            async with self._sending:
                sender = await self._connection("_sender")
                await sender.execute("SELECT pg_notify($1, $2)", self._channel(channel), payload)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("could not notify other replicas: %s", type(exc).__name__)

    async def subscribe(
        self, channel: str, callback: Callback, on_resync: Callable[[], None] | None = None
    ) -> Subscription:
        first = channel not in self._hub.channels
        ident = self._hub.add(channel, callback, on_resync)
        if first:
            name = self._channel(channel)
            self._names[name] = channel
            try:
                async with self._lock:
                    listener = await self._connection("_listener")
                    await listener.add_listener(name, self._received)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("could not listen for other replicas: %s", type(exc).__name__)
        return _Handle(self, channel, ident)

    def _received(self, _conn: Any, _pid: int, name: str, payload: str) -> None:
        if payload.startswith(self._origin):
            return  # sent by this process: its subscribers had it already
        topic = self._names.get(name)
        if topic is not None:
            self._hub.deliver(topic, payload[len(self._origin) :].encode())

    def _lost(self, _conn: Any) -> None:
        """The listening connection closed: listen again, then every subscriber catches up."""
        if not self._closed:
            asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        for delay in (0.05, 0.25, 1.0, 2.0, 5.0):
            await asyncio.sleep(delay)
            try:
                async with self._lock:
                    self._listener = None
                    listener = await self._connection("_listener")
                    for name, topic in self._names.items():
                        if topic in self._hub.channels:
                            await listener.add_listener(name, self._received)
                self._hub.resync()
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                continue
        log.warning("could not listen for other replicas again; events arrive on reconnection")

    async def _leave(self, channel: str, ident: int) -> None:
        if self._hub.remove(channel, ident):
            name = self._channel(channel)
            self._names.pop(name, None)
            listener = self._listener
            if listener is not None and not listener.is_closed():
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await listener.remove_listener(name, self._received)

    async def close(self) -> None:
        self._closed = True
        for which in ("_listener", "_sender"):
            found = getattr(self, which)
            setattr(self, which, None)
            if found is not None:
                with contextlib.suppress(Exception):
                    await found.close(timeout=2.0)
