"""OpenAI Chat Completions function tools, strict where the schema allows it.

Shape and strict rules: platform.openai.com/docs/guides/function-calling and
platform.openai.com/docs/guides/structured-outputs ("Supported schemas").
"""

from __future__ import annotations

from typing import Any

from patchbay.spec._model import Tool
from patchbay.spec._schema import parameters_schema, supports_strict, tool_description


def export(tool: Tool, strict: bool) -> dict[str, Any]:
    """`{"type": "function", "function": {name, description, parameters, strict}}`."""
    # A free-form object parameter cannot be strict; that tool alone falls back to best effort.
    strict = strict and supports_strict(tool)
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool_description(tool),
            "parameters": parameters_schema(tool, strict=strict),
            "strict": strict,
        },
    }
