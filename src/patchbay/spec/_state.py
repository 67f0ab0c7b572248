"""`state`: one store URL, or a fast store beside a durable one, and the checks of both."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Discriminator, Tag

from patchbay._errors import ConfigError
from patchbay.spec._base import Frozen

_USE = (
    "use memory, sqlite:///path, redis://host:port/db, redis+cluster://host:port "
    "or postgresql://user@host:port/db"
)


class StateSpec(Frozen):
    """`state: {fast, durable}`: limits, breakers and caches on `fast`; what must not be lost
    (outbox, idempotency ledger, call state, outcomes, callbacks) on `durable`."""

    fast: str
    durable: str


def _kind(value: Any) -> str:
    return "StateSpec" if isinstance(value, dict | StateSpec) else "str"


# Tagged by the input's shape, so a mapping is checked as {fast, durable} only (no "expected
# text" beside its real errors) and a string as a URL only.
StateValue = Annotated[
    Annotated[str, Tag("str")] | Annotated[StateSpec, Tag("StateSpec")],
    Discriminator(_kind),
]


def state_urls(state: str | StateSpec) -> dict[str, str]:
    """The URLs a `state` value names, by role ("state" for a single store)."""
    if isinstance(state, StateSpec):
        return {"fast": state.fast, "durable": state.durable}
    return {"state": state}


def durable_url(state: str | StateSpec) -> str:
    """The URL of the store that keeps what must survive a restart."""
    return state.durable if isinstance(state, StateSpec) else state


def check_state_url(url: str, where: str) -> list[ConfigError]:
    """A state store URL must name one of the backends, with a host or path where one is due."""
    if url == "memory":
        return []
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return []
    scheme = urlsplit(url).scheme
    known = ("redis", "rediss", "redis+cluster", "rediss+cluster", "postgresql", "postgres")
    if scheme in known and urlsplit(url).hostname:
        return []
    return [ConfigError(f"unknown state store {_shown(url)!r}; {_USE}", where)]


def _shown(url: str) -> str:
    """The URL without its password, for error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
