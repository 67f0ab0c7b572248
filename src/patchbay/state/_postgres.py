"""PostgresStore: durable state that several replicas share through one PostgreSQL database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

from patchbay.state._gcra import GcraParams, decode_tat, encode_tat, gcra_params, gcra_reserve
from patchbay.state._protocol import StateError, StateTypeError, StateUnavailable, check_ttl
from patchbay.state._redis import redact_url

_T = TypeVar("_T")

# One key space as in Redis: entries.value IS NULL marks a hash whose fields are in pb_fields.
# Times are the database's clock (seconds since the epoch), so every replica agrees on expiry.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS {entries} (
    key TEXT PRIMARY KEY,
    value BYTEA,
    expires_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS {entries}_expiry ON {entries} (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS {fields} (
    key TEXT NOT NULL,
    field TEXT NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (key, field)
);
"""
_NOW = "extract(epoch from clock_timestamp())::float8"
# Purging is housekeeping only (reads ignore expired rows), so it runs every so many writes.
_PURGE_EVERY = 1000
# Serialises concurrent schema creation by several replicas (CREATE ... IF NOT EXISTS races).
_SCHEMA_LOCK = 0x70617463  # "patc"


class PostgresStore:
    """State in two PostgreSQL tables, through an asyncpg connection pool opened on first use.

    Every write of one key runs in a transaction holding a transaction-scoped advisory lock on
    that key, so read-modify-write operations (incr, compare_and_set, the rate limiter) are
    atomic across replicas without retry loops; reads are one statement each.
    """

    backend: str = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "patchbay:",
        table: str = "patchbay_state",
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout_s: float = 5.0,
    ) -> None:
        if not table.isidentifier() or not table.isascii():
            raise ValueError(f"invalid table name {table!r}: letters, digits and _ only")
        self.url = url
        self.prefix = prefix
        self._entries = table
        self._fields = f"{table}_fields"
        self._sizes = (min_size, max_size)
        self._connect_timeout_s = connect_timeout_s
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._writes = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresStore({redact_url(self.url)!r}, table={self._entries!r})"

    async def get(self, key: str) -> bytes | None:
        """Return the value at `key`, or None when it is absent or expired."""
        row = await self._fetchrow(
            f"SELECT value, value IS NULL AS is_hash FROM {self._entries} "
            f"WHERE key = $1 AND (expires_at IS NULL OR expires_at > {_NOW})",
            self._k(key),
        )
        return _value_of(key, row)

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        """Store `value` at `key`, replacing whatever was there."""
        ttl = check_ttl(ttl_s)
        k = self._k(key)
        async with self._locked(k) as conn:
            await conn.execute(self._upsert(), k, bytes(value), ttl)
            await conn.execute(f"DELETE FROM {self._fields} WHERE key = $1", k)

    async def delete(self, key: str) -> None:
        """Remove `key` (value or hash); absent keys are fine."""
        k = self._k(key)
        async with self._locked(k) as conn:
            await conn.execute(f"DELETE FROM {self._entries} WHERE key = $1", k)
            await conn.execute(f"DELETE FROM {self._fields} WHERE key = $1", k)

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        """Store `value` only if `key` is absent; True when this call claimed it."""
        ttl = check_ttl(ttl_s)
        # One statement is atomic on its own: insert, or take over only an expired value
        # (hash markers never expire, so they are never taken over, as SET NX in Redis).
        row = await self._fetchrow(
            self._upsert()
            + f" WHERE {self._entries}.expires_at IS NOT NULL"
            + f" AND {self._entries}.expires_at <= {_NOW} RETURNING 1",
            self._k(key),
            bytes(value),
            ttl,
        )
        return row is not None

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes, ttl_s: float | None = None
    ) -> bool:
        """Store `value` only if the current value equals `expected` (None: key must be absent)."""
        ttl = check_ttl(ttl_s)
        k = self._k(key)
        async with self._locked(k) as conn:
            if await self._current(conn, key, k) != expected:
                return False
            await conn.execute(self._upsert(), k, bytes(value), ttl)
            return True

    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        """Add `amount` to the integer at `key` and return it; `ttl_s` applies only on creation."""
        ttl = check_ttl(ttl_s)
        k = self._k(key)
        async with self._locked(k) as conn:
            row = await conn.fetchrow(
                f"SELECT value, value IS NULL AS is_hash FROM {self._entries} "
                f"WHERE key = $1 AND (expires_at IS NULL OR expires_at > {_NOW})",
                k,
            )
            if row is None:
                total = amount
                await conn.execute(self._upsert(), k, b"%d" % total, ttl)
                return total
            if row["is_hash"]:
                raise StateTypeError(f"key {key!r} holds a hash, not an integer")
            total = _parse_int(key, row["value"]) + amount
            await conn.execute(
                f"UPDATE {self._entries} SET value = $2 WHERE key = $1", k, b"%d" % total
            )
            return total

    async def acquire_rate(
        self, key: str, rate_per_s: float, burst: int, max_wait_s: float
    ) -> float | None:
        """Reserve a GCRA slot; the seconds to wait before sending, or None if beyond max_wait_s."""
        params = gcra_params(rate_per_s, burst, max_wait_s)
        k = self._k(key)
        async with self._locked(k) as conn:
            return await self._reserve(conn, key, k, params)

    async def hset(self, key: str, field: str, value: bytes) -> None:
        """Store `value` under `field` of the hash at `key`."""
        k = self._k(key)
        async with self._locked(k) as conn:
            row = await self._live(conn, k)
            if row is not None and not row["is_hash"]:
                raise StateTypeError(f"key {key!r} holds a value, not a hash")
            if row is None:
                await conn.execute(self._upsert(), k, None, None)
                await conn.execute(f"DELETE FROM {self._fields} WHERE key = $1", k)
            await conn.execute(
                f"INSERT INTO {self._fields} (key, field, value) VALUES ($1, $2, $3) "
                "ON CONFLICT (key, field) DO UPDATE SET value = excluded.value",
                k,
                field,
                bytes(value),
            )

    async def hget(self, key: str, field: str) -> bytes | None:
        """Return one field of the hash at `key`, or None."""
        row = await self._fetchrow(
            f"SELECT e.value IS NULL AS is_hash, h.value FROM {self._entries} AS e "
            f"LEFT JOIN {self._fields} AS h ON h.key = e.key AND h.field = $2 "
            f"WHERE e.key = $1 AND (e.expires_at IS NULL OR e.expires_at > {_NOW})",
            self._k(key),
            field,
        )
        if row is None:
            return None
        if not row["is_hash"]:
            raise StateTypeError(f"key {key!r} holds a value, not a hash")
        value: bytes | None = row["value"]
        return value

    async def hgetall(self, key: str) -> dict[str, bytes]:
        """Return every field of the hash at `key` ({} when absent)."""
        # One statement, so the kind check and the fields come from the same snapshot.
        rows = await self._fetch(
            f"SELECT e.value IS NULL AS is_hash, h.field, h.value FROM {self._entries} AS e "
            f"LEFT JOIN {self._fields} AS h ON h.key = e.key "
            f"WHERE e.key = $1 AND (e.expires_at IS NULL OR e.expires_at > {_NOW})",
            self._k(key),
        )
        if not rows:
            return {}
        if not rows[0]["is_hash"]:
            raise StateTypeError(f"key {key!r} holds a value, not a hash")
        return {r["field"]: bytes(r["value"]) for r in rows if r["field"] is not None}

    async def hdel(self, key: str, field: str) -> None:
        """Remove one field; the hash disappears with its last field."""
        k = self._k(key)
        async with self._locked(k) as conn:
            row = await self._live(conn, k)
            if row is None:
                return
            if not row["is_hash"]:
                raise StateTypeError(f"key {key!r} holds a value, not a hash")
            await conn.execute(
                f"DELETE FROM {self._fields} WHERE key = $1 AND field = $2", k, field
            )
            left = await conn.fetchrow(f"SELECT 1 FROM {self._fields} WHERE key = $1 LIMIT 1", k)
            if left is None:
                await conn.execute(f"DELETE FROM {self._entries} WHERE key = $1", k)

    async def close(self) -> None:
        """Close the pool's connections; calling it twice is fine."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # Internals.

    def _k(self, key: str) -> str:
        return self.prefix + key

    def _upsert(self) -> str:
        """INSERT or replace ($1 key, $2 value, $3 ttl_s or NULL), expiry on the database clock."""
        return (
            f"INSERT INTO {self._entries} (key, value, expires_at) "
            f"VALUES ($1, $2, {_NOW} + $3::float8) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "expires_at = excluded.expires_at"
        )

    async def _live(self, conn: asyncpg.Connection, k: str) -> Any:
        return await conn.fetchrow(
            f"SELECT value IS NULL AS is_hash FROM {self._entries} "
            f"WHERE key = $1 AND (expires_at IS NULL OR expires_at > {_NOW})",
            k,
        )

    async def _current(self, conn: asyncpg.Connection, key: str, k: str) -> bytes | None:
        row = await conn.fetchrow(
            f"SELECT value, value IS NULL AS is_hash FROM {self._entries} "
            f"WHERE key = $1 AND (expires_at IS NULL OR expires_at > {_NOW})",
            k,
        )
        return _value_of(key, row)

    async def _reserve(
        self, conn: asyncpg.Connection, key: str, k: str, params: GcraParams
    ) -> float | None:
        row = await conn.fetchrow(
            f"SELECT {_NOW} AS now, e.key IS NOT NULL AS found, e.value "
            f"FROM (SELECT 1) AS one LEFT JOIN {self._entries} AS e ON e.key = $1 "
            f"AND (e.expires_at IS NULL OR e.expires_at > {_NOW})",
            k,
        )
        now: float = row["now"]
        if row["found"] and row["value"] is None:
            raise StateTypeError(f"key {key!r} holds a hash, not a value")
        reserved = gcra_reserve(decode_tat(_bytes(row["value"])), now, params)
        if reserved is None:
            return None
        tat, wait = reserved
        await conn.execute(self._upsert(), k, encode_tat(tat), max(tat - now, 1e-3))
        return wait

    async def _ensure(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        if self._closed:
            raise StateError("the PostgreSQL state store is closed")
        async with self._opening:
            if self._pool is None:
                self._pool = await self._open()
            return self._pool

    async def _open(self) -> asyncpg.Pool:
        try:
            pool = await asyncpg.create_pool(
                self.url,
                min_size=self._sizes[0],
                max_size=self._sizes[1],
                timeout=self._connect_timeout_s,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            raise StateUnavailable(
                f"cannot reach PostgreSQL at {redact_url(self.url)}: {type(exc).__name__}"
            ) from exc
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
            await conn.execute(_SCHEMA.format(entries=self._entries, fields=self._fields))
        return pool

    @asynccontextmanager
    async def _locked(self, k: str) -> AsyncIterator[asyncpg.Connection]:
        """A transaction holding the advisory lock of one key (hashed to 64 bits)."""
        pool = await self._ensure()
        async with self._guard(), pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", k)
            yield conn
            self._writes += 1
            if self._writes % _PURGE_EVERY == 0:
                await conn.execute(f"DELETE FROM {self._entries} WHERE expires_at <= {_NOW}")

    async def _fetchrow(self, query: str, *args: Any) -> Any:
        return await self._with_pool(lambda pool: pool.fetchrow(query, *args))

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self._with_pool(lambda pool: pool.fetch(query, *args))
        return rows

    async def _with_pool(self, run: Callable[[asyncpg.Pool], Awaitable[_T]]) -> _T:
        pool = await self._ensure()
        async with self._guard():
            return await run(pool)

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Connection failures become StateUnavailable; type errors and the rest pass through."""
        try:
            yield
        except (OSError, TimeoutError, asyncpg.PostgresConnectionError) as exc:
            raise StateUnavailable(f"PostgreSQL state store: {type(exc).__name__}") from exc
        except asyncpg.InterfaceError as exc:
            raise StateUnavailable(f"PostgreSQL state store: {exc}") from exc


def _bytes(raw: Any) -> bytes | None:
    return None if raw is None else bytes(raw)


def _value_of(key: str, row: Any) -> bytes | None:
    if row is None:
        return None
    if row["is_hash"]:
        raise StateTypeError(f"key {key!r} holds a hash, not a value")
    return bytes(row["value"])


def _parse_int(key: str, raw: bytes) -> int:
    try:
        return int(raw)
    except ValueError:
        raise StateTypeError(f"key {key!r} does not hold an integer") from None
