"""Voice-stack surfaces: MCP and OpenAI Realtime here; Pipecat and LiveKit as optional modules.

`patchbay.integrations.pipecat` and `patchbay.integrations.livekit` import their frameworks
(the `pipecat` and `livekit` extras), so this package does not import them.
"""

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
