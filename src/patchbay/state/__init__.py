"""State shared by the policies: one StateStore protocol, memory, SQLite and Redis backends."""

from patchbay.state._fallback import FallbackStore
from patchbay.state._memory import MemoryStore
from patchbay.state._open import open_store
from patchbay.state._protocol import StateError, StateStore, StateTypeError, StateUnavailable
from patchbay.state._redis import RedisStore
from patchbay.state._sqlite import SQLiteStore

__all__ = [
    "FallbackStore",
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "StateError",
    "StateStore",
    "StateTypeError",
    "StateUnavailable",
    "open_store",
]
