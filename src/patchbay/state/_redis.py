"""RedisStore: state shared by every replica through one Redis server or cluster.

Every operation touches exactly one key, and each script names it in KEYS, so all of them
work unchanged on Redis Cluster. Atomicity comes from single commands (SET NX PX, INCRBY,
HSET) or from Lua scripts that Redis runs without interleaving.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import cast
from urllib.parse import urlsplit, urlunsplit

from redis import exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from patchbay.state._batch import AcquireRate, Get, Incr, Op, Outcome, Set, run_op
from patchbay.state._gcra import EPSILON_S, gcra_params
from patchbay.state._protocol import StateError, StateTypeError, StateUnavailable, check_ttl

log = logging.getLogger("patchbay.state")

# ARGV: expect_absent ('1'/'0'), expected, value, ttl_ms ('' = no expiry)
_CAS = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
if ARGV[4] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
"""

# ARGV: amount, ttl_ms. Creating the key with its TTL first makes the TTL apply only once.
_INCR_WITH_TTL = """
redis.call('SET', KEYS[1], '0', 'NX', 'PX', ARGV[2])
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""

# The arithmetic of _gcra.gcra_reserve, on the server's clock so that replicas agree.
# ARGV: interval_s, tolerance_s, max_wait_s, epsilon_s. Returns the wait as text (Redis
# truncates Lua numbers to integers) or nil when the caller would wait too long.
_GCRA = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '') or now
if tat < now then tat = now end
local wait = tat - tonumber(ARGV[2]) - now
if wait < 0 then wait = 0 end
if wait > tonumber(ARGV[3]) + tonumber(ARGV[4]) then return false end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.6f', new_tat),
           'PX', math.max(1, math.ceil((new_tat - now) * 1000)))
return string.format('%.6f', wait)
"""


class RedisStore:
    """State in Redis under `prefix`; connection failures raise StateUnavailable."""

    backend: str = "redis"
    batches: bool = True  # `batch` pipelines: one round trip (one per node on a cluster)

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "patchbay:",
        connect_timeout_s: float = 0.25,
        timeout_s: float = 0.5,
        cluster: bool = False,
    ) -> None:
        self.prefix = prefix
        self.cluster = cluster
        self._display_url = redact_url(url)
        self._closed = False
        # One immediate retry replaces a pooled socket that a server restart closed; the
        # library's default (10 retries with backoff) would hold a voice call for seconds.
        self._redis: Redis | RedisCluster
        if cluster:
            # Any node's address will do: the client learns the slot map from it.
            self._redis = RedisCluster.from_url(
                url,
                socket_connect_timeout=connect_timeout_s,
                socket_timeout=timeout_s,
            )
        else:
            self._redis = Redis.from_url(
                url,
                socket_connect_timeout=connect_timeout_s,
                socket_timeout=timeout_s,
                retry=Retry(NoBackoff(), 1),
            )
        # A cluster client must learn the slot map before commands run concurrently: redis-py's
        # asyncio cluster client fails commands that race its first connections otherwise.
        self._cold = cluster
        self._cas = self._redis.register_script(_CAS)
        self._incr_with_ttl = self._redis.register_script(_INCR_WITH_TTL)
        self._gcra = self._redis.register_script(_GCRA)

    async def _warm(self) -> None:
        if self._cold:
            await cast("RedisCluster", self._redis).initialize()  # it holds a lock of its own
            self._cold = False

    def __repr__(self) -> str:
        return f"RedisStore({self._display_url!r}, prefix={self.prefix!r})"

    @property
    def client(self) -> Redis | RedisCluster:
        """The redis-py client (for pub/sub, which is not a StateStore operation)."""
        return self._redis

    async def get(self, key: str) -> bytes | None:
        """Return the value at `key`, or None when it is absent or expired."""
        with _translate(key):
            await self._warm()
            return cast("bytes | None", await self._redis.get(self.prefix + key))

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        """Store `value` at `key`, replacing whatever was there."""
        ttl_ms = _ttl_ms(check_ttl(ttl_s))
        with _translate(key):
            await self._warm()
            await self._redis.set(self.prefix + key, value, px=ttl_ms)

    async def delete(self, key: str) -> None:
        """Remove `key` (value or hash); absent keys are fine."""
        with _translate(key):
            await self._warm()
            await self._redis.delete(self.prefix + key)

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        """Store `value` only if `key` is absent; True when this call claimed it."""
        # SET NX PX is one atomic command already; a script would only add a round of EVALSHA.
        ttl_ms = _ttl_ms(check_ttl(ttl_s))
        with _translate(key):
            await self._warm()
            return bool(await self._redis.set(self.prefix + key, value, nx=True, px=ttl_ms))

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes, ttl_s: float | None = None
    ) -> bool:
        """Store `value` only if the current value equals `expected` (None: key must be absent)."""
        ttl_ms = _ttl_ms(check_ttl(ttl_s))
        args = [
            b"1" if expected is None else b"0",
            b"" if expected is None else expected,
            value,
            b"" if ttl_ms is None else str(ttl_ms).encode(),
        ]
        with _translate(key):
            await self._warm()
            return bool(await self._cas(keys=[self.prefix + key], args=args))

    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        """Add `amount` to the integer at `key` and return it; `ttl_s` applies only on creation."""
        ttl_ms = _ttl_ms(check_ttl(ttl_s))
        with _translate(key):
            await self._warm()
            if ttl_ms is None:
                return int(await self._redis.incrby(self.prefix + key, amount))
            return int(await self._incr_with_ttl(keys=[self.prefix + key], args=[amount, ttl_ms]))

    async def acquire_rate(
        self, key: str, rate_per_s: float, burst: int, max_wait_s: float
    ) -> float | None:
        """Reserve a GCRA slot; the seconds to wait before sending, or None if beyond max_wait_s."""
        p = gcra_params(rate_per_s, burst, max_wait_s)
        args = [repr(p.interval_s), repr(p.tolerance_s), repr(p.max_wait_s), repr(EPSILON_S)]
        with _translate(key):
            await self._warm()
            wait = await self._gcra(keys=[self.prefix + key], args=args)
        return None if wait is None else float(wait)

    async def hset(self, key: str, field: str, value: bytes) -> None:
        """Store `value` under `field` of the hash at `key`."""
        with _translate(key):
            await self._warm()
            await self._redis.hset(self.prefix + key, field, value)

    async def hget(self, key: str, field: str) -> bytes | None:
        """Return one field of the hash at `key`, or None."""
        with _translate(key):
            await self._warm()
            value = await self._redis.hget(self.prefix + key, field)
        return cast("bytes | None", value)

    async def hgetall(self, key: str) -> dict[str, bytes]:
        """Return every field of the hash at `key` ({} when absent)."""
        with _translate(key):
            await self._warm()
            raw = await self._redis.hgetall(self.prefix + key)
        return {field.decode(): value for field, value in cast("dict[bytes, bytes]", raw).items()}

    async def hdel(self, key: str, field: str) -> None:
        """Remove one field; the hash disappears with its last field."""
        with _translate(key):
            await self._warm()
            await self._redis.hdel(self.prefix + key, field)

    async def batch(self, ops: Sequence[Op]) -> list[Outcome]:
        """Run `ops` in order in one pipeline; each op's value, or the error it met.

        Not a transaction (MULTI would need every key in one slot): each op is atomic alone.
        Scripts go as EVALSHA without redis-py's script check, which costs a round trip of its
        own; an op whose script the server lost (a restart) is run again alone, which loads it.
        """
        if not ops:
            return []
        with _translate(ops[0].key):
            await self._warm()
            pipe = self._redis.pipeline(transaction=False)
            for op in ops:
                self._queue(pipe, op)
            replies = await pipe.execute(raise_on_error=False)
        out: list[Outcome] = []
        for op, reply in zip(ops, replies, strict=True):
            if isinstance(reply, rx.NoScriptError):
                try:
                    out.append(await run_op(self, op))
                except StateUnavailable:
                    raise
                except (StateError, ValueError) as exc:
                    out.append(exc)
            elif isinstance(reply, Exception):
                out.append(_reply_error(op.key, reply))
            elif isinstance(op, Get):
                out.append(reply)
            elif isinstance(op, Incr):
                out.append(int(reply))
            elif isinstance(op, AcquireRate):
                out.append(None if reply is None else float(reply))
            elif isinstance(op, Set):
                out.append(None)
            else:
                out.append(bool(reply))
        return out

    def _queue(self, pipe: object, op: Op) -> None:
        p = cast("Redis", pipe)  # both pipelines queue the commands of their clients
        key = self.prefix + op.key
        if isinstance(op, Get):
            p.get(key)
        elif isinstance(op, Incr):
            ttl_ms = _ttl_ms(check_ttl(op.ttl_s))
            if ttl_ms is None:
                p.incrby(key, op.amount)
            else:
                self._script(p, _INCR_WITH_TTL, self._incr_with_ttl.sha, key, op.amount, ttl_ms)
        elif isinstance(op, AcquireRate):
            g = gcra_params(op.rate_per_s, op.burst, op.max_wait_s)
            args = [repr(g.interval_s), repr(g.tolerance_s), repr(g.max_wait_s), repr(EPSILON_S)]
            self._script(p, _GCRA, self._gcra.sha, key, *args)
        elif isinstance(op, Set):
            p.set(key, op.value, px=_ttl_ms(check_ttl(op.ttl_s)))
        else:
            p.set(key, op.value, nx=True, px=_ttl_ms(check_ttl(op.ttl_s)))

    def _script(self, p: Redis, text: str, sha: str, key: str, *args: object) -> None:
        if self.cluster:
            # redis-py's cluster pipeline refuses EVALSHA; EVAL sends the text, which the
            # server compiles once and keeps in its script cache.
            p.eval(text, 1, key, *args)  # type: ignore[arg-type]
        else:
            p.evalsha(sha, 1, key, *args)  # type: ignore[arg-type]

    async def close(self) -> None:
        """Close the connection pool; calling it twice is fine, and it never fails.

        redis-py waits for each socket to close within the connect timeout (a quarter of a
        second behind the fallback store) and raises past it on a loaded host; the socket is
        closed by then all the same, and a shutdown must not fail for it.
        """
        if not self._closed:
            self._closed = True
            try:
                await self._redis.aclose()
            except (rx.RedisError, OSError) as exc:
                log.debug("redis: connections closed without waiting (%s)", type(exc).__name__)


def redact_url(url: str) -> str:
    """Hide the password of a URL so it can go into logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{f'[{host}]' if ':' in host else host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _ttl_ms(ttl_s: float | None) -> int | None:
    # Rounded up: a TTL must never end earlier than asked, and PX 0 is an error in Redis.
    return None if ttl_s is None else max(1, math.ceil(ttl_s * 1000))


def _reply_error(key: str, exc: Exception) -> Exception:
    """A pipelined reply's error as `_translate` would have raised it."""
    if isinstance(exc, rx.ResponseError) and (
        "WRONGTYPE" in str(exc) or "not an integer" in str(exc)
    ):
        return StateTypeError(f"key {key!r} holds the wrong kind of value: {exc}")
    return exc


@contextmanager
def _translate(key: str) -> Iterator[None]:
    """Turn redis-py's errors into the state layer's, so callers need not import redis."""
    try:
        yield
    except (rx.ConnectionError, rx.TimeoutError, OSError) as exc:
        raise StateUnavailable(f"redis is unreachable: {exc}") from exc
    except (rx.ClusterDownError, rx.TryAgainError, rx.RedisClusterException) as exc:
        raise StateUnavailable(f"the redis cluster cannot serve: {exc}") from exc
    except rx.ResponseError as exc:
        if "WRONGTYPE" in str(exc) or "not an integer" in str(exc):
            raise StateTypeError(f"key {key!r} holds the wrong kind of value: {exc}") from exc
        raise
