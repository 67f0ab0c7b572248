"""Secret references (`env:NAME`, `file:PATH`, pluggable `scheme:...`) resolved at run time.

A config holds only references; values live in memory inside `Secret`, which never prints
them, and every value resolved is remembered so log redaction can scrub it anywhere.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from patchbay._errors import ConfigError, SecretError
from patchbay.spec._model import Config
from patchbay.spec._refs import secret_references

__all__ = [
    "EnvProvider",
    "FileProvider",
    "Secret",
    "SecretProvider",
    "SecretResolver",
    "check_secrets",
    "known_secret_values",
]

_REFERENCE = re.compile(r"([a-z][a-z0-9+.-]{0,31}):(.+)", re.DOTALL)
_LITERAL = "secrets must be references like env:NAME or file:PATH; never put a secret in the config"


class Secret:
    """A secret value that prints as `Secret('***')`; `reveal()` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself; only for putting it on the wire."""
        return self._value

    def matches(self, candidate: str) -> bool:
        """Whether `candidate` equals the value, compared in constant time."""
        return hmac.compare_digest(self._value.encode(), candidate.encode())

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self.matches(other._value)

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        # pickling would write the value out (caches, multiprocessing); refuse it
        raise TypeError("a Secret cannot be pickled")


@runtime_checkable
class SecretProvider(Protocol):
    """Resolves the part after `scheme:` of a reference to its value."""

    async def resolve(self, name: str) -> str:
        """The value named `name`; raise SecretError (naming it, never a value) if unknown."""
        ...


class EnvProvider:
    """`env:NAME`: an environment variable (one of the two places that read the environment)."""

    async def resolve(self, name: str) -> str:
        """The variable's value."""
        value = os.environ.get(name)
        if value is None:
            raise SecretError(f"secret env:{name} is not set in the environment")
        return value


class FileProvider:
    """`file:PATH`: a file's text with one trailing newline removed; relative to `base_dir`."""

    def __init__(self, base_dir: str | Path = ".") -> None:
        self._base = Path(base_dir)

    def path(self, name: str) -> Path:
        """Where `file:name` points."""
        path = Path(name).expanduser()
        return path if path.is_absolute() else self._base / path

    async def resolve(self, name: str) -> str:
        """The file's text."""
        try:
            text = await asyncio.to_thread(self.path(name).read_text, "utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise SecretError(f"secret file:{name} cannot be read ({reason})") from None
        if text.endswith("\r\n"):
            return text[:-2]
        return text[:-1] if text.endswith("\n") else text


_known: set[str] = set()
_known_frozen: frozenset[str] = frozenset()


def _remember(value: str) -> None:
    global _known_frozen
    if value not in _known:
        _known.add(value)
        _known_frozen = frozenset(_known)


def known_secret_values() -> frozenset[str]:
    """Every secret value resolved in this process so far, for log redaction."""
    return _known_frozen


class SecretResolver:
    """Resolves references through providers registered by scheme, caching values.

    `ttl_s=None` caches a value for the resolver's life; a number re-resolves after that many
    seconds (rotation). Concurrent resolutions of one reference share one provider call.
    """

    def __init__(
        self,
        base_dir: str | Path = ".",
        *,
        ttl_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._providers: dict[str, SecretProvider] = {
            "env": EnvProvider(),
            "file": FileProvider(base_dir),
        }
        self._ttl = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[Secret, float]] = {}
        self._pending: dict[str, asyncio.Future[Secret]] = {}

    def register(self, scheme: str, provider: SecretProvider) -> None:
        """Resolve `scheme:...` references with `provider` (e.g. "vault")."""
        if not re.fullmatch(r"[a-z][a-z0-9+.-]{0,31}", scheme):
            raise ValueError(f"invalid secret scheme {scheme!r}")
        self._providers[scheme] = provider

    @staticmethod
    def check(ref: str) -> tuple[str, str]:
        """Split a reference into (scheme, name); a literal value raises SecretError."""
        match = _REFERENCE.fullmatch(ref)
        if match is None:
            raise SecretError(_LITERAL)
        return match.group(1), match.group(2)

    def cached(self, ref: str) -> Secret | None:
        """The secret `ref` names if the cache holds it fresh (no I/O), else None."""
        cached = self._cache.get(ref)
        if cached is not None and (self._ttl is None or self._clock() < cached[1]):
            return cached[0]
        return None

    async def resolve(self, ref: str) -> Secret:
        """The secret `ref` names, from the cache while it is fresh."""
        found = self.cached(ref)
        if found is not None:
            return found
        pending = self._pending.get(ref)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(ref))
            self._pending[ref] = pending
            pending.add_done_callback(lambda fut: self._settled(ref, fut))
        # shielded: one caller giving up must not cancel the others' shared lookup
        return await asyncio.shield(pending)

    def _settled(self, ref: str, fut: asyncio.Future[Secret]) -> None:
        if self._pending.get(ref) is fut:
            del self._pending[ref]
        if not fut.cancelled():
            fut.exception()  # retrieved here, so an abandoned failure is not logged as lost

    async def _fetch(self, ref: str) -> Secret:
        scheme, name = self.check(ref)
        provider = self._providers.get(scheme)
        if provider is None:
            known = ", ".join(sorted(self._providers))
            raise SecretError(f"unknown secret scheme {scheme!r} (known: {known})")
        try:
            value = await provider.resolve(name)
        except SecretError:
            raise
        except Exception as exc:
            # a provider's own exception may quote what it read; keep only its type
            raise SecretError(
                f"secret {scheme}:{name} could not be resolved ({type(exc).__name__})"
            ) from None
        if not value:
            raise SecretError(f"secret {scheme}:{name} is empty")
        _remember(value)
        secret = Secret(value)
        expires = self._clock() + self._ttl if self._ttl is not None else float("inf")
        self._cache[ref] = (secret, expires)
        return secret

    def invalidate(self, ref: str | None = None) -> None:
        """Forget a cached value (or all), so the next resolve asks the provider again."""
        if ref is None:
            self._cache.clear()
        else:
            self._cache.pop(ref, None)

    def known_values(self) -> frozenset[str]:
        """Every secret value resolved in this process, for the log redactor."""
        return _known_frozen


async def check_secrets(
    config: Config, resolver: SecretResolver | None = None
) -> list[ConfigError]:
    """Resolve every secret reference of `config` now; a ConfigError for each that fails.

    Each error names the reference's place in the config and why (not set, unreadable, unknown
    scheme), never a value. `resolver` is the one the runtime will use, with any providers
    registered on it; by default only env: and file: are known.
    """
    resolver = resolver if resolver is not None else SecretResolver(base_dir=config.base_dir)
    errors = []
    for where, ref in secret_references(config):
        try:
            await resolver.resolve(ref)
        except SecretError as exc:
            errors.append(ConfigError(str(exc), where))
    return errors
