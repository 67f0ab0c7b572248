"""open_store: the config's `state:` URL to a store, and the public names of the package."""

from __future__ import annotations

from pathlib import Path

import pytest

import patchbay.state
from patchbay.state import (
    FallbackStore,
    MemoryStore,
    PostgresStore,
    RedisStore,
    SQLiteStore,
    open_store,
)


@pytest.mark.parametrize("url", ["memory", "memory://"])
async def test_memory(url: str) -> None:
    store = open_store(url)
    assert isinstance(store, MemoryStore) and store.backend == "memory"


async def test_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = open_store(f"sqlite:///{path}")  # absolute path: four slashes in all
    try:
        assert isinstance(store, SQLiteStore) and store.path == str(path)
        await store.set("k", b"v")
    finally:
        await store.close()
    assert path.exists()


async def test_sqlite_in_memory() -> None:
    store = open_store("sqlite:///:memory:")
    try:
        assert isinstance(store, SQLiteStore) and store.path == ":memory:"
    finally:
        await store.close()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/2", "rediss://cache.internal:6380/0"])
async def test_redis_is_wrapped_in_a_fallback(url: str) -> None:
    store = open_store(url, key_prefix="app:")
    try:
        assert isinstance(store, FallbackStore) and store.backend == "fallback"
        assert isinstance(store.primary, RedisStore) and store.primary.prefix == "app:"
        assert isinstance(store.local, MemoryStore)
    finally:
        await store.close()


@pytest.mark.parametrize(
    "url", ["", "mysql://db/state", "sqlite://relative.db", "sqlite:///", "redis", "/tmp/x.db"]
)
def test_invalid_urls_name_the_schemes_expected(url: str) -> None:
    with pytest.raises(
        ValueError, match=r"expected 'memory', 'sqlite:///PATH', 'redis://.*'postgresql://"
    ):
        open_store(url)


def test_invalid_url_errors_hide_passwords() -> None:
    with pytest.raises(ValueError) as info:
        open_store("mysql://admin:s3cret@db:5432/state")
    assert "s3cret" not in str(info.value)


async def test_a_postgresql_url_opens_a_shared_durable_store() -> None:
    store = open_store("postgresql://admin:s3cret@db:5432/state?table=pb_state&sslmode=disable")
    try:
        assert isinstance(store, PostgresStore) and store.backend == "postgresql"
        assert store.url == "postgresql://admin:s3cret@db:5432/state?sslmode=disable"
        assert "s3cret" not in repr(store) and "pb_state" in repr(store)
    finally:
        await store.close()


@pytest.mark.parametrize("table", ["pb-state", "x;drop", "ünïcode"])
def test_a_postgresql_table_name_must_be_an_identifier(table: str) -> None:
    with pytest.raises(ValueError, match="invalid table name"):
        open_store(f"postgresql://db/state?table={table}")


def test_public_names() -> None:
    assert sorted(patchbay.state.__all__) == [
        "FallbackStore",
        "MemoryStore",
        "PostgresStore",
        "RedisStore",
        "SQLiteStore",
        "SplitStore",
        "StateError",
        "StateStore",
        "StateTypeError",
        "StateUnavailable",
        "open_store",
    ]
    assert all(hasattr(patchbay.state, name) for name in patchbay.state.__all__)
