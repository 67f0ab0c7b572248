"""State shared by the policies: one StateStore protocol; memory, SQLite, Redis, PostgreSQL."""

from typing import TYPE_CHECKING

from patchbay._lazy import lazy_exports

if TYPE_CHECKING:
    from patchbay.state._fallback import FallbackStore
    from patchbay.state._memory import MemoryStore
    from patchbay.state._open import open_store
    from patchbay.state._postgres import PostgresStore
    from patchbay.state._protocol import StateError, StateStore, StateTypeError, StateUnavailable
    from patchbay.state._redis import RedisStore
    from patchbay.state._split import SplitStore
    from patchbay.state._sqlite import SQLiteStore

__all__ = [
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

# Each name's module is imported on first use, for start-up time (see patchbay._lazy).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "._fallback": ("FallbackStore",),
        "._memory": ("MemoryStore",),
        "._open": ("open_store",),
        "._postgres": ("PostgresStore",),
        "._protocol": (
            "StateError",
            "StateStore",
            "StateTypeError",
            "StateUnavailable",
        ),
        "._redis": ("RedisStore",),
        "._split": ("SplitStore",),
        "._sqlite": ("SQLiteStore",),
    },
)
