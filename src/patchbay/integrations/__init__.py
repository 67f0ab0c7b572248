"""Voice-stack surfaces: MCP and OpenAI Realtime here; Pipecat and LiveKit as optional modules.

`patchbay.integrations.pipecat` and `patchbay.integrations.livekit` import their frameworks
(the `pipecat` and `livekit` extras), so this package does not import them.
"""

from typing import TYPE_CHECKING

from patchbay._lazy import lazy_exports

if TYPE_CHECKING:
    from patchbay.integrations import openai_realtime
    from patchbay.integrations._mcp import (
        HEADER_CALL_ID,
        HEADER_CALLER,
        HEADER_TENANT,
        META_CALL_ID,
        META_CALLER,
        META_TENANT,
        McpHttp,
        McpLifespan,
        mcp_asgi,
        mcp_server,
        serve_stdio,
        tool_result,
    )
    from patchbay.integrations.openai_realtime import (
        RealtimeToolBridge,
        handle_server_event,
        session_tools_payload,
    )

__all__ = [
    "HEADER_CALLER",
    "HEADER_CALL_ID",
    "HEADER_TENANT",
    "META_CALLER",
    "META_CALL_ID",
    "META_TENANT",
    "McpHttp",
    "McpLifespan",
    "RealtimeToolBridge",
    "handle_server_event",
    "mcp_asgi",
    "mcp_server",
    "openai_realtime",
    "serve_stdio",
    "session_tools_payload",
    "tool_result",
]

# Each name's module is imported on first use, for start-up time (see patchbay._lazy).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        ".openai_realtime": (
            "openai_realtime",
            "RealtimeToolBridge",
            "handle_server_event",
            "session_tools_payload",
        ),
        "._mcp": (
            "HEADER_CALL_ID",
            "HEADER_CALLER",
            "HEADER_TENANT",
            "META_CALL_ID",
            "META_CALLER",
            "META_TENANT",
            "McpHttp",
            "McpLifespan",
            "mcp_asgi",
            "mcp_server",
            "serve_stdio",
            "tool_result",
        ),
    },
)
