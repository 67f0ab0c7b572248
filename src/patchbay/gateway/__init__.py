"""The gateway: tool calls over HTTP for any client, Vapi, Retell, ElevenLabs and MCP."""

from patchbay.gateway._app import Gateway, create_app
from patchbay.gateway._auth import Credentials, sign_retell, verify_retell_signature
from patchbay.gateway._export import Platform, export_platform
from patchbay.gateway._serve import loop_factory, run, serve

__all__ = [
    "Credentials",
    "Gateway",
    "Platform",
    "create_app",
    "export_platform",
    "loop_factory",
    "run",
    "serve",
    "sign_retell",
    "verify_retell_signature",
]
