"""SQLiteStore: durable state on one machine, shareable by several processes through one file."""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from patchbay.state._gcra import GcraParams, decode_tat, encode_tat, gcra_params, gcra_reserve
from patchbay.state._protocol import StateError, StateTypeError, check_ttl

_T = TypeVar("_T")
_P = ParamSpec("_P")

# entries.value IS NULL marks a hash, whose fields live in hash_fields: one key space, as Redis.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    value BLOB,
    expires_at REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_expiry ON entries (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS hash_fields (
    key TEXT NOT NULL,
    field TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (key, field)
) WITHOUT ROWID;
"""
_UPSERT = (
    "INSERT INTO entries (key, value, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
)
# Purging is only housekeeping (reads ignore expired rows), so it runs every so many writes.
_PURGE_EVERY = 1000


class SQLiteStore:
    """State in one SQLite file (WAL mode); TTLs use the wall clock so they survive restarts.

    All work on the connection runs on one private thread, so this process's operations
    never interleave; other processes are kept out by `BEGIN IMMEDIATE` and a busy timeout.
    """

    backend: str = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = os.fspath(path)
        self._clock = clock
        self._writes = 0
        self._closed = False
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot open SQLite state file {self.path!r}: {exc}") from exc
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives process crashes; a power cut can lose the last commits.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            with self._tx() as conn:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("DELETE FROM entries WHERE expires_at <= ?", (self._clock(),))
        except sqlite3.Error as exc:
            self._conn.close()
            raise StateError(f"cannot use SQLite state file {self.path!r}: {exc}") from exc
        # Not aiosqlite: it is the same design (a thread per connection) and measured slower
        # here; a one-worker executor keeps every transaction on one thread, with no dependency.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="patchbay-sqlite")

    async def get(self, key: str) -> bytes | None:
        """Return the value at `key`, or None when it is absent or expired."""
        return await self._run(self._get, key)

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        """Store `value` at `key`, replacing whatever was there."""
        await self._run(self._set, key, bytes(value), check_ttl(ttl_s))

    async def delete(self, key: str) -> None:
        """Remove `key` (value or hash); absent keys are fine."""
        await self._run(self._delete, key)

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        """Store `value` only if `key` is absent; True when this call claimed it."""
        return await self._run(self._set_if_absent, key, bytes(value), check_ttl(ttl_s))

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes, ttl_s: float | None = None
    ) -> bool:
        """Store `value` only if the current value equals `expected` (None: key must be absent)."""
        return await self._run(self._compare_and_set, key, expected, bytes(value), check_ttl(ttl_s))

    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        """Add `amount` to the integer at `key` and return it; `ttl_s` applies only on creation."""
        return await self._run(self._incr, key, amount, check_ttl(ttl_s))

    async def acquire_rate(
        self, key: str, rate_per_s: float, burst: int, max_wait_s: float
    ) -> float | None:
        """Reserve a GCRA slot; the seconds to wait before sending, or None if beyond max_wait_s."""
        params = gcra_params(rate_per_s, burst, max_wait_s)
        return await self._run(self._acquire_rate, key, params)

    async def hset(self, key: str, field: str, value: bytes) -> None:
        """Store `value` under `field` of the hash at `key`."""
        await self._run(self._hset, key, field, bytes(value))

    async def hget(self, key: str, field: str) -> bytes | None:
        """Return one field of the hash at `key`, or None."""
        return await self._run(self._hget, key, field)

    async def hgetall(self, key: str) -> dict[str, bytes]:
        """Return every field of the hash at `key` ({} when absent)."""
        return await self._run(self._hgetall, key)

    async def hdel(self, key: str, field: str) -> None:
        """Remove one field; the hash disappears with its last field."""
        await self._run(self._hdel, key, field)

    async def close(self) -> None:
        """Close the connection and its thread; calling it twice is fine."""
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=False)

    async def _run(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    # Everything below runs on the store's thread.

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        # IMMEDIATE takes the write lock up front; a deferred transaction that later writes can
        # fail with SQLITE_BUSY instead of waiting when another process wrote in between.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _wrote(self, conn: sqlite3.Connection, now: float) -> None:
        self._writes += 1
        if self._writes % _PURGE_EVERY == 0:
            conn.execute("DELETE FROM entries WHERE expires_at <= ?", (now,))

    def _row(self, conn: sqlite3.Connection, key: str, now: float) -> tuple[bool, bytes | None]:
        """(exists, value) for a live key; value None with exists True means a hash."""
        row = conn.execute("SELECT value, expires_at FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= now):
            return False, None
        return True, row[0]

    def _value(self, conn: sqlite3.Connection, key: str, now: float) -> bytes | None:
        exists, value = self._row(conn, key, now)
        if exists and value is None:
            raise StateTypeError(f"key {key!r} holds a hash, not a value")
        return value

    def _get(self, key: str) -> bytes | None:
        return self._value(self._conn, key, self._clock())

    def _set(self, key: str, value: bytes, ttl_s: float | None) -> None:
        now = self._clock()
        with self._tx() as conn:
            conn.execute(_UPSERT, (key, value, _expiry(now, ttl_s)))
            conn.execute("DELETE FROM hash_fields WHERE key = ?", (key,))
            self._wrote(conn, now)

    def _delete(self, key: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM entries WHERE key = ?", (key,))
            conn.execute("DELETE FROM hash_fields WHERE key = ?", (key,))

    def _set_if_absent(self, key: str, value: bytes, ttl_s: float | None) -> bool:
        now = self._clock()
        # One statement is atomic on its own: insert, or take over only an expired value
        # (hash markers have no expiry, so they are never taken over, as SET NX in Redis).
        cursor = self._conn.execute(
            _UPSERT + " WHERE entries.expires_at IS NOT NULL AND entries.expires_at <= ?",
            (key, value, _expiry(now, ttl_s), now),
        )
        return cursor.rowcount == 1

    def _compare_and_set(
        self, key: str, expected: bytes | None, value: bytes, ttl_s: float | None
    ) -> bool:
        now = self._clock()
        with self._tx() as conn:
            if self._value(conn, key, now) != expected:
                return False
            conn.execute(_UPSERT, (key, value, _expiry(now, ttl_s)))
            self._wrote(conn, now)
            return True

    def _incr(self, key: str, amount: int, ttl_s: float | None) -> int:
        now = self._clock()
        with self._tx() as conn:
            row = conn.execute(
                "SELECT value, expires_at FROM entries WHERE key = ?", (key,)
            ).fetchone()
            if row is None or (row[1] is not None and row[1] <= now):
                total, expires_at = amount, _expiry(now, ttl_s)
            elif row[0] is None:
                raise StateTypeError(f"key {key!r} holds a hash, not an integer")
            else:
                total, expires_at = _parse_int(key, row[0]) + amount, row[1]
            conn.execute(_UPSERT, (key, b"%d" % total, expires_at))
            self._wrote(conn, now)
            return total

    def _acquire_rate(self, key: str, params: GcraParams) -> float | None:
        now = self._clock()
        with self._tx() as conn:
            reserved = gcra_reserve(decode_tat(self._value(conn, key, now)), now, params)
            if reserved is None:
                return None
            tat, wait = reserved
            conn.execute(_UPSERT, (key, encode_tat(tat), tat))
            self._wrote(conn, now)
            return wait

    def _hset(self, key: str, field: str, value: bytes) -> None:
        now = self._clock()
        with self._tx() as conn:
            exists, current = self._row(conn, key, now)
            if exists and current is not None:
                raise StateTypeError(f"key {key!r} holds a value, not a hash")
            if not exists:
                conn.execute(_UPSERT, (key, None, None))
            conn.execute(
                "INSERT INTO hash_fields (key, field, value) VALUES (?, ?, ?) "
                "ON CONFLICT (key, field) DO UPDATE SET value = excluded.value",
                (key, field, value),
            )

    def _hget(self, key: str, field: str) -> bytes | None:
        now = self._clock()
        row = self._conn.execute(
            "SELECT e.value IS NULL, e.expires_at, h.value FROM entries AS e "
            "LEFT JOIN hash_fields AS h ON h.key = e.key AND h.field = ? WHERE e.key = ?",
            (field, key),
        ).fetchone()
        if row is None or (row[1] is not None and row[1] <= now):
            return None
        if not row[0]:
            raise StateTypeError(f"key {key!r} holds a value, not a hash")
        value: bytes | None = row[2]
        return value

    def _hgetall(self, key: str) -> dict[str, bytes]:
        now = self._clock()
        # One statement, so the kind check and the fields come from the same snapshot.
        rows = self._conn.execute(
            "SELECT e.value IS NULL, e.expires_at, h.field, h.value FROM entries AS e "
            "LEFT JOIN hash_fields AS h ON h.key = e.key WHERE e.key = ?",
            (key,),
        ).fetchall()
        if not rows or (rows[0][1] is not None and rows[0][1] <= now):
            return {}
        if not rows[0][0]:
            raise StateTypeError(f"key {key!r} holds a value, not a hash")
        return {field: value for _, _, field, value in rows if field is not None}

    def _hdel(self, key: str, field: str) -> None:
        now = self._clock()
        with self._tx() as conn:
            exists, current = self._row(conn, key, now)
            if not exists:
                return
            if current is not None:
                raise StateTypeError(f"key {key!r} holds a value, not a hash")
            conn.execute("DELETE FROM hash_fields WHERE key = ? AND field = ?", (key, field))
            left = conn.execute("SELECT 1 FROM hash_fields WHERE key = ? LIMIT 1", (key,))
            if left.fetchone() is None:
                conn.execute("DELETE FROM entries WHERE key = ?", (key,))


def _expiry(now: float, ttl_s: float | None) -> float | None:
    return None if ttl_s is None else now + ttl_s


def _parse_int(key: str, raw: bytes) -> int:
    try:
        return int(raw)
    except ValueError:
        raise StateTypeError(f"key {key!r} does not hold an integer") from None
