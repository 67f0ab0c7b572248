"""open_store: the store a config's `state:` URL names."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from patchbay.spec._state import StateSpec
from patchbay.state._fallback import FallbackStore
from patchbay.state._memory import MemoryStore
from patchbay.state._protocol import StateStore
from patchbay.state._redis import RedisStore, redact_url
from patchbay.state._split import SplitStore
from patchbay.state._sqlite import SQLiteStore

_EXPECTED = (
    "expected 'memory', 'sqlite:///PATH', 'redis://HOST:PORT/DB', "
    "'redis+cluster://HOST:PORT' or 'postgresql://USER@HOST:PORT/DB'"
)


def open_store(url: str | StateSpec, *, key_prefix: str = "patchbay:") -> StateStore:
    """Open `memory`, `sqlite:///PATH` (relative; `sqlite:////abs`), `redis://HOST:PORT/DB`
    `redis+cluster://HOST:PORT` (any node of a Redis Cluster) or
    `postgresql://USER:PASSWORD@HOST:PORT/DB[?table=NAME]`.

    A Redis URL gives a FallbackStore that serves from process memory while Redis is down.
    A StateSpec (`state: {fast, durable}`) gives a SplitStore over the two stores it names.
    """
    if isinstance(url, StateSpec):
        fast = open_store(url.fast, key_prefix=key_prefix)
        return SplitStore(fast, open_store(url.durable, key_prefix=key_prefix))
    if url in ("memory", "memory://"):
        return MemoryStore()
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        # SQLAlchemy's convention: three slashes then the path, so an absolute path has four.
        path = url.removeprefix("sqlite:///")
        if path == url or not path:
            raise ValueError(f"invalid SQLite state URL {url!r}: {_EXPECTED}")
        return SQLiteStore(path)
    if scheme in ("redis", "rediss"):
        return FallbackStore(RedisStore(url, prefix=key_prefix), MemoryStore())
    if scheme in ("redis+cluster", "rediss+cluster"):
        node = urlunsplit(urlsplit(url)._replace(scheme=scheme.removesuffix("+cluster")))
        # A cluster client opens a connection per node and command burst: slower to set up.
        primary = RedisStore(
            node, prefix=key_prefix, cluster=True, connect_timeout_s=1.0, timeout_s=1.0
        )
        return FallbackStore(primary, MemoryStore())
    if scheme in ("postgresql", "postgres"):
        return _postgres(url, key_prefix)
    raise ValueError(f"unsupported state URL {redact_url(url)!r}: {_EXPECTED}")


def _postgres(url: str, key_prefix: str) -> StateStore:
    # Imported here, for start-up time and because the driver is the optional `postgres` extra.
    try:
        from patchbay.state._postgres import PostgresStore
    except ImportError as exc:
        raise ValueError(
            "a postgresql:// state URL needs the asyncpg driver: pip install 'patchbay[postgres]'"
        ) from exc
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    table = next((v for k, v in query if k == "table"), "patchbay_state")
    rest = urlencode([(k, v) for k, v in query if k != "table"])
    return PostgresStore(urlunsplit(parts._replace(query=rest)), prefix=key_prefix, table=table)
