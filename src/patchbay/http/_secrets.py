"""Secret references (`env:NAME`, `file:PATH`, pluggable `scheme:...`) resolved at run time.

A config holds only references; values live in memory inside `Secret`, which never prints
them, and every value resolved is remembered so log redaction can scrub it anywhere.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
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
    "check_scheme",
    "check_secrets_with",
    "known_secret_values",
]

log = logging.getLogger("patchbay.secrets")
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


def check_scheme(scheme: str) -> None:
    """Raise ValueError unless `scheme` is a valid scheme name (lowercase, like `vault`)."""
    if not re.fullmatch(r"[a-z][a-z0-9+.-]{0,31}", scheme):
        raise ValueError(f"invalid secret scheme {scheme!r}")


# After a failed background refresh the old value is served this long before the next try, so
# a secret manager that is down is not asked again on every call.
_RETRY_AFTER_S = 10.0


class SecretResolver:
    """Resolves references through providers registered by scheme, caching values.

    `ttl_s=None` caches a value for the resolver's life; a number re-resolves after that many
    seconds (rotation); `set_ttl` sets it per scheme. A value past its TTL is still served while
    one refresh runs in the background (stale while revalidate), so no call waits for the secret
    manager; a failed refresh keeps the old value and is retried. Concurrent resolutions of one
    reference share one provider call.
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
        self._ttls: dict[str, float | None] = {}
        self._lazy: dict[str, Callable[[], SecretProvider]] = {}
        self._discover: Callable[[], None] | None = None
        self._clock = clock
        self._cache: dict[str, tuple[Secret, float]] = {}
        self._pending: dict[str, asyncio.Future[Secret]] = {}

    def register(self, scheme: str, provider: SecretProvider) -> None:
        """Resolve `scheme:...` references with `provider` (e.g. "vault")."""
        check_scheme(scheme)
        self._providers[scheme] = provider
        self._lazy.pop(scheme, None)

    def register_lazy(self, scheme: str, make: Callable[[], SecretProvider]) -> None:
        """Resolve `scheme:...` with the provider `make()` builds on the scheme's first use."""
        check_scheme(scheme)
        self._providers.pop(scheme, None)
        self._lazy[scheme] = make

    def discover_with(self, discover: Callable[[], None]) -> None:
        """Run `discover` (which may register more schemes) the first time a scheme is unknown.

        Finding plugin providers means scanning installed packages: only worth it when a
        reference names a scheme nothing registered.
        """
        self._discover = discover

    def _discovered(self) -> None:
        discover, self._discover = self._discover, None
        if discover is not None:
            discover()

    def set_ttl(self, scheme: str, ttl_s: float | None) -> None:
        """Re-read `scheme:` references after `ttl_s` seconds (None: keep them for good)."""
        self._ttls[scheme] = ttl_s

    @property
    def schemes(self) -> frozenset[str]:
        """The schemes this resolver knows (plugins found on first asking)."""
        self._discovered()
        return frozenset(self._providers) | frozenset(self._lazy)

    def ttl_of(self, ref: str) -> float | None:
        """How long a value of `ref` stays fresh (None: for good)."""
        return self._ttls.get(ref.partition(":")[0], self._ttl)

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
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        return None

    async def resolve(self, ref: str, *, fresh: bool = False) -> Secret:
        """The secret `ref` names, from the cache while it is fresh.

        Past its TTL the old value is returned at once and a refresh starts in the background;
        `fresh=True` waits for that refresh instead (a failed one still yields the old value).
        """
        cached = self._cache.get(ref)
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        pending = self._pending.get(ref)
        if cached is not None:
            if pending is None:
                pending = self._start(ref)
            if not fresh:
                return cached[0]
            try:
                return await asyncio.shield(pending)
            except SecretError:
                return cached[0]
        if pending is None:
            pending = self._start(ref)
        # shielded: one caller giving up must not cancel the others' shared lookup
        return await asyncio.shield(pending)

    def _start(self, ref: str) -> asyncio.Future[Secret]:
        pending = asyncio.ensure_future(self._fetch(ref))
        self._pending[ref] = pending
        pending.add_done_callback(lambda fut: self._settled(ref, fut))
        return pending

    def _settled(self, ref: str, fut: asyncio.Future[Secret]) -> None:
        if self._pending.get(ref) is fut:
            del self._pending[ref]
        if fut.cancelled():
            return
        exc = fut.exception()  # retrieved here, so an abandoned failure is not logged as lost
        stale = self._cache.get(ref)
        if exc is not None and stale is not None:
            # the message names the reference, never a value
            log.warning("secret refresh failed, still using the previous value: %s", exc)
            ttl = self.ttl_of(ref) or _RETRY_AFTER_S
            self._cache[ref] = (stale[0], self._clock() + min(ttl, _RETRY_AFTER_S))

    async def _fetch(self, ref: str) -> Secret:
        scheme, name = self.check(ref)
        if scheme not in self._providers and scheme not in self._lazy:
            self._discovered()
        provider = self._providers.get(scheme)
        make = self._lazy.pop(scheme, None) if provider is None else None
        if make is not None:
            try:
                provider = self._providers[scheme] = make()
            except Exception as exc:
                self._lazy[scheme] = make
                raise SecretError(
                    f"the secret provider for {scheme}: could not start ({type(exc).__name__})"
                ) from None
        if provider is None:
            known = ", ".join(sorted(self.schemes))
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
        ttl = self.ttl_of(ref)
        expires = self._clock() + ttl if ttl is not None else float("inf")
        cached = self._cache.get(ref)
        # the same Secret object while the value is unchanged: its users' rendering stays valid
        secret = cached[0] if cached is not None and cached[0].matches(value) else Secret(value)
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


async def check_secrets_with(config: Config, resolver: SecretResolver) -> list[ConfigError]:
    """Resolve every secret reference of `config` with `resolver`; a ConfigError for each failure.

    Each error names the reference's place in the config and why, never a value.
    """
    errors = []
    for where, ref in secret_references(config):
        try:
            await resolver.resolve(ref)
        except SecretError as exc:
            errors.append(ConfigError(str(exc), where))
    return errors
