"""open_store: the store a config's `state:` URL names."""

from __future__ import annotations

from urllib.parse import urlsplit

from patchbay.state._fallback import FallbackStore
from patchbay.state._memory import MemoryStore
from patchbay.state._protocol import StateStore
from patchbay.state._redis import RedisStore, redact_url
from patchbay.state._sqlite import SQLiteStore

_EXPECTED = "expected 'memory', 'sqlite:///PATH' or 'redis://HOST:PORT/DB'"


def open_store(url: str, *, key_prefix: str = "patchbay:") -> StateStore:
    """Open `memory`, `sqlite:///PATH` (relative; `sqlite:////abs`) or `redis://HOST:PORT/DB`.

    A Redis URL gives a FallbackStore that serves from process memory while Redis is down.
    """
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
    raise ValueError(f"unsupported state URL {redact_url(url)!r}: {_EXPECTED}")
