"""Anthropic Messages API tools.

Shape: docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use
(`name`, `description`, `input_schema` as a JSON Schema object).
"""

from __future__ import annotations

from typing import Any

from patchbay.spec._model import Tool
from patchbay.spec._schema import parameters_schema, tool_description


def export(tool: Tool, strict: bool) -> dict[str, Any]:
    """`{name, description, input_schema}`."""
    return {
        "name": tool.name,
        "description": tool_description(tool),
        "input_schema": parameters_schema(tool),
    }
