"""OpenAI Realtime session tools (session.update `tools`): flat, no nested "function".

Shape: platform.openai.com/docs/guides/realtime-conversations (function calling) and the
Realtime API reference of session.update; Realtime has no strict switch.
"""

from __future__ import annotations

from typing import Any

from patchbay.spec._model import Tool
from patchbay.spec._schema import parameters_schema, tool_description


def export(tool: Tool, strict: bool) -> dict[str, Any]:
    """`{"type": "function", name, description, parameters}`."""
    return {
        "type": "function",
        "name": tool.name,
        "description": tool_description(tool),
        "parameters": parameters_schema(tool),
    }
