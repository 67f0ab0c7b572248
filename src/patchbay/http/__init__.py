"""HTTP core: sans-IO request building, the transport, auth and secret references."""

from typing import TYPE_CHECKING

from patchbay._lazy import lazy_exports

if TYPE_CHECKING:
    from patchbay.http._auth import Authenticator, NoAuth, build_authenticator
    from patchbay.http._build import build_request, fill, fill_text
    from patchbay.http._httptools import HttptoolsTransport
    from patchbay.http._providers import (
        SecretProviderFactory,
        build_resolver,
        check_secrets,
        register_secret_provider,
    )
    from patchbay.http._secrets import (
        EnvProvider,
        FileProvider,
        Secret,
        SecretProvider,
        SecretResolver,
        known_secret_values,
    )
    from patchbay.http._transport import AiohttpTransport
    from patchbay.http._types import ConnectError, Request, Response, Transport, TransportError
    from patchbay.http._version import apply_version

__all__ = [
    "AiohttpTransport",
    "Authenticator",
    "ConnectError",
    "EnvProvider",
    "FileProvider",
    "HttptoolsTransport",
    "NoAuth",
    "Request",
    "Response",
    "Secret",
    "SecretProvider",
    "SecretProviderFactory",
    "SecretResolver",
    "Transport",
    "TransportError",
    "apply_version",
    "build_authenticator",
    "build_request",
    "build_resolver",
    "check_secrets",
    "fill",
    "fill_text",
    "known_secret_values",
    "register_secret_provider",
]

# Each name's module is imported on first use, for start-up time (see patchbay._lazy).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "._auth": (
            "Authenticator",
            "NoAuth",
            "build_authenticator",
        ),
        "._build": (
            "build_request",
            "fill",
            "fill_text",
        ),
        "._httptools": ("HttptoolsTransport",),
        "._providers": (
            "SecretProviderFactory",
            "build_resolver",
            "check_secrets",
            "register_secret_provider",
        ),
        "._secrets": (
            "EnvProvider",
            "FileProvider",
            "Secret",
            "SecretProvider",
            "SecretResolver",
            "known_secret_values",
        ),
        "._transport": ("AiohttpTransport",),
        "._types": (
            "ConnectError",
            "Request",
            "Response",
            "Transport",
            "TransportError",
        ),
        "._version": ("apply_version",),
    },
)
