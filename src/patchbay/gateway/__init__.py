"""The gateway: tool calls over HTTP for any client, Vapi, Retell, ElevenLabs and MCP."""

from typing import TYPE_CHECKING

from patchbay._lazy import lazy_exports

if TYPE_CHECKING:
    from patchbay.gateway._app import Gateway, create_app
    from patchbay.gateway._auth import Credentials, sign_retell, verify_retell_signature
    from patchbay.gateway._export import Platform, credential_hint, export_platform
    from patchbay.gateway._serve import loop_factory, run, serve

__all__ = [
    "Credentials",
    "Gateway",
    "Platform",
    "create_app",
    "credential_hint",
    "export_platform",
    "loop_factory",
    "run",
    "serve",
    "sign_retell",
    "verify_retell_signature",
]

# Each name's module is imported on first use, for start-up time (see patchbay._lazy).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "._app": (
            "Gateway",
            "create_app",
        ),
        "._auth": (
            "Credentials",
            "sign_retell",
            "verify_retell_signature",
        ),
        "._export": (
            "Platform",
            "credential_hint",
            "export_platform",
        ),
        "._serve": (
            "loop_factory",
            "run",
            "serve",
        ),
    },
)
