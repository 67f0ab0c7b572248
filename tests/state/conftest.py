"""Stores under test: every backend, opened so that several instances can share one state."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from patchbay.state import (
    FallbackStore,
    MemoryStore,
    PostgresStore,
    RedisStore,
    SQLiteStore,
    StateStore,
)

Opener = Callable[[], StateStore]

# Backends whose separate instances share state (same file, same Redis keys).
SHARED = [
    "sqlite",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("fallback", marks=pytest.mark.redis),
    "postgresql",
    pytest.param("redis-cluster", marks=pytest.mark.redis),
]
# "fallback-down" is a FallbackStore whose Redis never answers: it must behave as memory does.
ALL = ["memory", *SHARED, "fallback-down"]


def closed_port_url() -> str:
    """A Redis URL on a loopback port where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


async def _opener(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Opener]:
    opened: list[StateStore] = []

    def remember(store: StateStore) -> StateStore:
        opened.append(store)
        return store

    if name in ("memory", "fallback-down"):
        single = remember(
            MemoryStore()
            if name == "memory"
            else FallbackStore(RedisStore(closed_port_url()), MemoryStore())
        )

        def opener() -> StateStore:
            return single

    elif name == "sqlite":

        def opener() -> StateStore:
            return remember(SQLiteStore(tmp_path / "state.db"))

    elif name == "postgresql":
        pg_url: str = request.getfixturevalue("postgres_url")
        pg_prefix: str = request.getfixturevalue("postgres_key_prefix")

        def opener() -> StateStore:
            return remember(PostgresStore(pg_url, prefix=pg_prefix))

    elif name == "redis-cluster":
        cluster_url: str = request.getfixturevalue("redis_cluster_url")
        cluster_prefix: str = request.getfixturevalue("redis_cluster_prefix")
        node = cluster_url.replace("redis+cluster://", "redis://", 1)

        def opener() -> StateStore:
            return remember(RedisStore(node, prefix=cluster_prefix, cluster=True))

    else:
        url: str = request.getfixturevalue("redis_url")
        prefix: str = request.getfixturevalue("redis_key_prefix")

        def opener() -> StateStore:
            redis_store = RedisStore(url, prefix=prefix)
            if name == "redis":
                return remember(redis_store)
            return remember(FallbackStore(redis_store, MemoryStore()))

    yield opener
    for store in opened:
        await store.close()


@pytest.fixture(params=ALL)
async def store_opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens stores of one backend; for memory and fallback-down every call gives the same one."""
    async for opener in _opener(request.param, request, tmp_path):
        yield opener


@pytest.fixture
def down_redis_url() -> str:
    """A Redis URL where no server listens."""
    return closed_port_url()


@pytest.fixture
def store(store_opener: Opener) -> StateStore:
    """One store of each backend."""
    return store_opener()


@pytest.fixture(params=SHARED)
async def shared_opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens distinct store instances, as separate replicas would, over one shared state."""
    async for opener in _opener(request.param, request, tmp_path):
        yield opener
