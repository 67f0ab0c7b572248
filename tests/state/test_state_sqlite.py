"""What only the SQLite store promises: durability across reopen and several processes."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from patchbay.state import SQLiteStore, StateError


async def test_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    await store.set("value", b"kept")
    await store.incr("counter", 7)
    await store.hset("outbox", "entry-1", b'{"op": "write"}')
    await store.set("short", b"gone soon", ttl_s=0.3)
    await store.acquire_rate("rl", 1, 1, max_wait_s=0)
    await store.close()

    reopened = SQLiteStore(path)
    try:
        assert await reopened.get("value") == b"kept"
        assert await reopened.incr("counter") == 8
        assert await reopened.hgetall("outbox") == {"entry-1": b'{"op": "write"}'}
        assert await reopened.get("short") == b"gone soon"
        assert await reopened.acquire_rate("rl", 1, 1, max_wait_s=0) is None
        await asyncio.sleep(0.4)
        assert await reopened.get("short") is None
    finally:
        await reopened.close()


async def test_expired_rows_are_purged_on_open(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    await store.set("short", b"v", ttl_s=0.1)
    await store.set("long", b"v")
    await store.close()
    await asyncio.sleep(0.2)
    await SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:
        assert [k for (k,) in conn.execute("SELECT key FROM entries")] == ["long"]


async def test_file_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    await SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_in_memory_database() -> None:
    store = SQLiteStore(":memory:")
    try:
        await store.set("k", b"v")
        assert await store.get("k") == b"v"
    finally:
        await store.close()


_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from patchbay.state import SQLiteStore

    async def main(path, worker):
        store = SQLiteStore(path)
        won = await store.set_if_absent("claim", worker.encode())
        for _ in range(100):
            await store.incr("n")
        await store.hset("workers", worker, b"done")
        await store.close()
        print("won" if won else "lost")

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_several_processes_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    await SQLiteStore(path).close()  # the schema exists before the workers race
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _WORKER, str(path), f"w{i}", stdout=subprocess.PIPE
        )
        for i in range(3)
    ]
    outputs = [(await w.communicate())[0].decode().strip() for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0]
    assert sorted(outputs) == ["lost", "lost", "won"]
    store = SQLiteStore(path)
    try:
        assert await store.get("n") == b"300"
        assert await store.hgetall("workers") == {f"w{i}": b"done" for i in range(3)}
    finally:
        await store.close()


def test_a_file_that_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "no such dir" / "state.db"
    with pytest.raises(StateError, match="SQLite state file"):
        SQLiteStore(missing)
