"""Model Context Protocol tools, as listed by tools/list.

Shape: modelcontextprotocol.io/specification/2025-06-18/server/tools (`name`,
`description`, `inputSchema`, optional `annotations` hints).
"""

from __future__ import annotations

from typing import Any

from patchbay.spec._model import Tool
from patchbay.spec._schema import parameters_schema, tool_description


def export(tool: Tool, strict: bool) -> dict[str, Any]:
    """`{name, description, inputSchema, annotations}`."""
    return {
        "name": tool.name,
        "description": tool_description(tool),
        "inputSchema": parameters_schema(tool),
        "annotations": {
            "readOnlyHint": not tool.is_write,
            "idempotentHint": not tool.is_write or tool.idempotency is not None,
        },
    }
