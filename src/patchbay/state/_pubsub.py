"""Notifiers: small messages to every subscriber of a channel, in this process and in others.

A notifier goes with a state store (`notifier_for(store)`): over memory or SQLite it reaches
the subscribers of this process only; over Redis (alone, behind a FallbackStore or as the fast
half of a SplitStore) it reaches every replica through Redis pub/sub. A message is a hint that
comes at most once: what must not be lost is written to the store first, and subscribers read
it back after a gap or a reconnection (`on_resync`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from redis import exceptions as rx

from patchbay.state._fallback import FallbackStore
from patchbay.state._protocol import StateStore
from patchbay.state._redis import RedisStore
from patchbay.state._split import SplitStore

log = logging.getLogger("patchbay.state")

Callback = Callable[[bytes], None]

_RETRY_S = (0.05, 0.1, 0.25, 0.5, 1.0)  # between reconnections of a lost pub/sub connection


class Subscription(Protocol):
    """One callback's subscription to one channel."""

    async def cancel(self) -> None:
        """Stop delivering to the callback (calling it twice is fine)."""
        ...


class Notifier(Protocol):
    """Publishes messages to the callbacks subscribed to a channel, here and (`shared`) in
    every process that opened a notifier on the same store."""

    shared: bool

    async def publish(self, channel: str, message: bytes) -> None:
        """Deliver `message` to the channel's subscribers; never raises for a store outage."""
        ...

    async def subscribe(
        self, channel: str, callback: Callback, on_resync: Callable[[], None] | None = None
    ) -> Subscription:
        """Call `callback` with every message published to `channel` from now on (once this
        returns); `on_resync` after a reconnection, when messages may have been missed."""
        ...

    async def close(self) -> None:
        """Release connections; calling it twice is fine."""
        ...


class _Hub:
    """The callbacks of this process, by channel."""

    def __init__(self) -> None:
        self.channels: dict[str, dict[int, tuple[Callback, Callable[[], None] | None]]] = {}
        self._ids = 0

    def add(self, channel: str, callback: Callback, on_resync: Callable[[], None] | None) -> int:
        self._ids += 1
        self.channels.setdefault(channel, {})[self._ids] = (callback, on_resync)
        return self._ids

    def remove(self, channel: str, ident: int) -> bool:
        """Forget one callback; True when the channel has no callback left."""
        found = self.channels.get(channel)
        if found is None:
            return False
        found.pop(ident, None)
        if found:
            return False
        del self.channels[channel]
        return True

    def deliver(self, channel: str, message: bytes) -> None:
        for callback, _ in list(self.channels.get(channel, {}).values()):
            try:
                callback(message)
            except Exception:  # one broken subscriber must not starve the others
                log.exception("a subscriber of %s failed", channel)

    def resync(self) -> None:
        for subscribers in list(self.channels.values()):
            for _, on_resync in list(subscribers.values()):
                if on_resync is not None:
                    on_resync()


class _Leaving(Protocol):
    async def _leave(self, channel: str, ident: int) -> None: ...


class _Handle:
    __slots__ = ("_channel", "_done", "_ident", "_notifier")

    def __init__(self, notifier: _Leaving, channel: str, ident: int) -> None:
        self._notifier = notifier
        self._channel = channel
        self._ident = ident
        self._done = False

    async def cancel(self) -> None:
        if not self._done:
            self._done = True
            await self._notifier._leave(self._channel, self._ident)


class LocalNotifier:
    """Delivers within this process only (the store is not shared with other processes)."""

    shared = False

    def __init__(self) -> None:
        self._hub = _Hub()

    async def publish(self, channel: str, message: bytes) -> None:
        self._hub.deliver(channel, message)

    async def subscribe(
        self, channel: str, callback: Callback, on_resync: Callable[[], None] | None = None
    ) -> Subscription:
        return _Handle(self, channel, self._hub.add(channel, callback, on_resync))

    async def _leave(self, channel: str, ident: int) -> None:
        self._hub.remove(channel, ident)

    async def close(self) -> None:
        return None


class RedisNotifier:
    """Redis pub/sub, one channel per topic under the store's key prefix.

    Subscribers of this process get a message at once, without the round trip through Redis;
    Redis carries it to the other processes, and each drops the messages it sent itself. One
    pub/sub connection serves every channel this notifier subscribes to.
    """

    shared = True

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._client = store.client
        self._prefix = store.prefix
        self._origin = uuid.uuid4().bytes  # 16 bytes before each message: who sent it
        self._hub = _Hub()
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._lock = asyncio.Lock()
        self._closed = False

    async def publish(self, channel: str, message: bytes) -> None:
        self._hub.deliver(channel, message)
        try:
            await self._client.publish(self._prefix + channel, self._origin + message)
        except (rx.RedisError, OSError, UnicodeError) as exc:
            # The message is in the store already: other replicas read it back on resync.
            log.warning("could not publish to other replicas: %s", type(exc).__name__)

    async def subscribe(
        self, channel: str, callback: Callback, on_resync: Callable[[], None] | None = None
    ) -> Subscription:
        first = channel not in self._hub.channels
        ident = self._hub.add(channel, callback, on_resync)
        if first:
            async with self._lock:
                try:
                    await self._join(channel)
                except (rx.RedisError, OSError, UnicodeError) as exc:
                    # Served locally meanwhile; the reader subscribes again once Redis answers.
                    log.warning("could not subscribe to other replicas: %s", type(exc).__name__)
                    self._start_reader()
        return _Handle(self, channel, ident)

    async def _join(self, channel: str) -> None:
        # A cluster client routes SUBSCRIBE by slot: it must know the slot map first.
        await self._store._warm()
        if self._pubsub is None:
            self._pubsub = self._client.pubsub()
        # Confirmed by the server before returning: a message published after this is seen.
        waiter = asyncio.get_running_loop().create_future()
        self._confirmed[self._prefix + channel] = waiter
        await self._pubsub.subscribe(self._prefix + channel)
        self._start_reader()
        try:
            async with asyncio.timeout(2.0):
                await asyncio.shield(waiter)
        except TimeoutError:
            log.warning("redis did not confirm a subscription in time")

    def _start_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        failures = 0
        while not self._closed:
            try:
                if self._pubsub is None or not self._pubsub.subscribed:
                    if not self._hub.channels:
                        return  # nothing to listen to: the next subscription starts a reader
                    await self._reconnect()
                    failures = 0
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except (rx.RedisError, OSError, RuntimeError) as exc:
                log.warning("the pub/sub connection to redis failed: %s", type(exc).__name__)
                await self._drop()
                await asyncio.sleep(_RETRY_S[min(failures, len(_RETRY_S) - 1)])
                failures += 1
                continue
            if message is not None:
                self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = message.get("channel")
        name = channel.decode() if isinstance(channel, bytes) else str(channel)
        if kind == "subscribe":
            waiter = self._confirmed.pop(name, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif kind == "message":
            data = message.get("data")
            if isinstance(data, bytes) and not data.startswith(self._origin):
                self._hub.deliver(name.removeprefix(self._prefix), data[16:])

    async def _reconnect(self) -> None:
        """A new pub/sub connection for every channel, then every subscriber catches up."""
        await self._drop()
        await self._store._warm()
        self._pubsub = self._client.pubsub()
        channels = [self._prefix + c for c in self._hub.channels]
        await self._pubsub.subscribe(*channels)
        self._hub.resync()

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _leave(self, channel: str, ident: int) -> None:
        if self._hub.remove(channel, ident) and self._pubsub is not None:
            async with self._lock:
                if channel not in self._hub.channels and self._pubsub is not None:
                    with contextlib.suppress(rx.RedisError, OSError):
                        await self._pubsub.unsubscribe(self._prefix + channel)

    async def close(self) -> None:
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self._drop()


# Stores that share no process with others share one local notifier per store object, so two
# runtimes over one MemoryStore see each other's messages.
_LOCAL: weakref.WeakKeyDictionary[Any, LocalNotifier] = weakref.WeakKeyDictionary()


def notifier_for(store: StateStore) -> Notifier:
    """A notifier reaching every process that shares `store` (the caller closes it)."""
    if isinstance(store, SplitStore):
        fast = notifier_for(store.fast)
        return fast if fast.shared else notifier_for(store.durable)
    if isinstance(store, FallbackStore):
        return notifier_for(store.primary)
    if isinstance(store, RedisStore):
        return RedisNotifier(store)
    if store.backend == "postgresql" and hasattr(store, "url"):
        # Imported here: asyncpg is the optional `postgres` extra, and slow to import.
        from patchbay.state._pgnotify import PostgresNotifier
        from patchbay.state._postgres import PostgresStore

        if isinstance(store, PostgresStore):
            return PostgresNotifier(store)
    try:
        found = _LOCAL.get(store)
        if found is None:
            found = _LOCAL[store] = LocalNotifier()
        return found
    except TypeError:  # a store that cannot be weakly referenced: a notifier of its own
        return LocalNotifier()
