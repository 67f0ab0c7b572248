"""`state: {fast, durable}`: what must not be lost goes to the durable store, the rest to fast."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from patchbay.state import (
    MemoryStore,
    PostgresStore,
    SplitStore,
    SQLiteStore,
    StateUnavailable,
)
from patchbay.state._split import namespace


@pytest.mark.parametrize(
    ("key", "where"),
    [
        ("outbox", "durable"),
        ("outbox-dead", "durable"),
        ("outbox-lease:ob_1", "durable"),
        ("idem:acme:pay_invoice:abc", "durable"),
        ("call:c-1", "durable"),
        ("call@acme:c-1", "durable"),
        ("outcome@acme:c-1:k", "durable"),
        ("callbacks", "durable"),
        ("inbox:billing", "durable"),
        ("brk:billing", "fast"),
        ("rate:billing", "fast"),
        ("cache:billing:get_customer:x", "fast"),
        ("quota:billing", "fast"),
        ("calls:c-1", "fast"),  # a namespace is the whole word before ':' or '@'
        ("", "fast"),
    ],
)
def test_keys_are_routed_by_namespace(key: str, where: str) -> None:
    fast, durable = MemoryStore(), MemoryStore()
    assert SplitStore(fast, durable).store_for(key) is (durable if where == "durable" else fast)


def test_namespace_is_the_text_before_the_first_separator() -> None:
    assert namespace("call@acme:c:1") == "call"
    assert namespace("idem:x@y") == "idem"
    assert namespace("plain") == "plain"


async def test_every_operation_lands_in_the_store_of_its_key(tmp_path: Path) -> None:
    fast, durable = MemoryStore(), SQLiteStore(tmp_path / "durable.db")
    store = SplitStore(fast, durable)
    try:
        await store.set("idem:t:pay:1", b"answer", ttl_s=60)
        await store.hset("outbox", "ob_1", b"entry")
        assert await store.set_if_absent("outbox-lease:ob_1", b"me", ttl_s=5)
        await store.set("cache:t:get:1", b"cached")
        assert await store.incr("quota:t", 2) == 2
        assert await store.acquire_rate("rate:t", 10, 1, 0) == 0.0
        assert await durable.get("idem:t:pay:1") == b"answer"
        assert await durable.hgetall("outbox") == {"ob_1": b"entry"}
        assert await durable.get("outbox-lease:ob_1") == b"me"
        assert await fast.get("idem:t:pay:1") is None and await fast.hgetall("outbox") == {}
        assert (
            await fast.get("cache:t:get:1") == b"cached"
            and await durable.get("cache:t:get:1") is None
        )
        assert await store.compare_and_set("call:c-1", None, b"{}")
        assert await durable.get("call:c-1") == b"{}"
        await store.hdel("outbox", "ob_1")
        await store.delete("call:c-1")
        assert await durable.hgetall("outbox") == {} and await durable.get("call:c-1") is None
    finally:
        await store.close()


async def test_an_unreachable_postgresql_is_unavailable_not_a_crash() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = PostgresStore(f"postgresql://u:s3cret@127.0.0.1:{port}/db", connect_timeout_s=1)
    try:
        with pytest.raises(StateUnavailable) as info:
            await store.get("k")
        assert "s3cret" not in str(info.value)
    finally:
        await store.close()
