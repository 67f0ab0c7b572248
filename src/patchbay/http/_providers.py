"""Secret providers by scheme: built in (vault:, aws-sm:), registered in Python, or plugins.

A plugin is a factory `factory(settings, resolver) -> SecretProvider`, registered with
`register_secret_provider("doppler", factory)` or declared by an installed package as an entry
point of the group `patchbay.secret_providers` (name: the scheme, value: `module:factory`).
`settings` is the scheme's mapping under `secrets.providers` (empty when the config has none);
`resolver` resolves the references those settings hold (a token as `env:NAME`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from patchbay._errors import ConfigError
from patchbay.http._aws_sm import AwsSecretsManagerProvider
from patchbay.http._secrets import (
    SecretProvider,
    SecretResolver,
    check_scheme,
    check_secrets_with,
)
from patchbay.http._vault import VaultProvider
from patchbay.spec import Config
from patchbay.spec._secrets import SecretsSpec

__all__ = [
    "ENTRY_POINT_GROUP",
    "SecretProviderFactory",
    "build_resolver",
    "check_secrets",
    "register_secret_provider",
]

ENTRY_POINT_GROUP = "patchbay.secret_providers"
SecretProviderFactory = Callable[[Mapping[str, Any], SecretResolver], SecretProvider]
_BUILT_IN = frozenset({"env", "file", "vault", "aws-sm"})
_registered: dict[str, SecretProviderFactory] = {}


def register_secret_provider(scheme: str, factory: SecretProviderFactory) -> None:
    """Resolve `scheme:...` references in every config loaded from now on with `factory`."""
    if scheme in _BUILT_IN:
        raise ValueError(f"secret scheme {scheme!r} is built in")
    check_scheme(scheme)
    _registered[scheme] = factory


# Scanning the installed packages' metadata takes about 10 ms: done once per sys.path.
_scanned: tuple[tuple[str, ...], dict[str, Callable[[], SecretProviderFactory]]] | None = None


def _plugins() -> dict[str, Callable[[], SecretProviderFactory]]:
    """Entry points of installed packages, by scheme; loaded only when a scheme is used."""
    global _scanned
    path = tuple(sys.path)
    if _scanned is None or _scanned[0] != path:
        found: dict[str, Callable[[], SecretProviderFactory]] = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name not in _BUILT_IN:
                found[ep.name] = ep.load
        _scanned = (path, found)
    return dict(_scanned[1])


def build_resolver(
    config: Config, *, clock: Callable[[], float] = time.monotonic
) -> SecretResolver:
    """The resolver for `config`: env:, file:, its secret managers, plugins, and their TTLs."""
    spec: SecretsSpec = config.secrets
    resolver = SecretResolver(base_dir=config.base_dir, ttl_s=spec.ttl_s, clock=clock)
    for scheme in ("env", "file"):
        resolver.set_ttl(scheme, spec.ttl_s)
    vault, aws = spec.vault, spec.aws
    if vault is not None:
        resolver.register_lazy("vault", lambda: VaultProvider(vault, resolver))
        resolver.set_ttl("vault", spec.ttl_for("vault"))
    if aws is not None:
        resolver.register_lazy("aws-sm", lambda: AwsSecretsManagerProvider(aws, resolver))
        resolver.set_ttl("aws-sm", spec.ttl_for("aws-sm"))

    def add(loaders: Mapping[str, Callable[[], SecretProviderFactory]]) -> None:
        for scheme, load in loaders.items():
            settings = spec.providers.get(scheme, {})
            resolver.register_lazy(scheme, _maker(load, settings, resolver))
            resolver.set_ttl(scheme, spec.ttl_for(scheme))

    # Installed plugins are looked for only when a reference names a scheme nobody registered
    # (the scan costs start-up time every command would pay); registered ones go in now.
    resolver.discover_with(
        lambda: add({s: load for s, load in _plugins().items() if s not in _registered})
    )
    add({scheme: _constant(factory) for scheme, factory in _registered.items()})
    return resolver


def _constant(factory: SecretProviderFactory) -> Callable[[], SecretProviderFactory]:
    return lambda: factory


def _maker(
    load: Callable[[], SecretProviderFactory], settings: Mapping[str, Any], resolver: SecretResolver
) -> Callable[[], SecretProvider]:
    own = {k: v for k, v in settings.items() if k != "ttl_s"}
    return lambda: load()(own, resolver)


async def check_secrets(
    config: Config, resolver: SecretResolver | None = None
) -> list[ConfigError]:
    """Resolve every secret reference of `config` now; a ConfigError for each that fails.

    Each error names the reference's place in the config and why (not set, unreadable, unknown
    scheme, refused by the secret manager), never a value. By default the resolver is the one
    `build_resolver(config)` gives, which knows the config's secret managers and plugins.
    """
    resolver = resolver if resolver is not None else build_resolver(config)
    errors = await check_secrets_with(config, resolver)
    for scheme in config.secrets.providers:
        if scheme not in resolver.schemes:
            errors.append(
                ConfigError(
                    f"no secret provider is registered for {scheme!r} (install its package or "
                    "call patchbay.register_secret_provider)",
                    f"secrets.providers.{scheme}",
                )
            )
    return errors
