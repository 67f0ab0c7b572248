"""Export tools in one LLM-facing format, chosen by enum."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from patchbay.spec._model import Tool
from patchbay.spec.formats import _anthropic, _gemini, _mcp, _openai, _realtime
from patchbay.spec.formats._enum import SchemaFormat

_EXPORTERS: dict[SchemaFormat, Callable[[Tool, bool], dict[str, Any]]] = {
    SchemaFormat.OPENAI: _openai.export,
    SchemaFormat.REALTIME: _realtime.export,
    SchemaFormat.ANTHROPIC: _anthropic.export,
    SchemaFormat.GEMINI: _gemini.export,
    SchemaFormat.MCP: _mcp.export,
}


def export_tools(
    tools: Iterable[Tool], fmt: SchemaFormat, strict: bool = True
) -> list[dict[str, Any]]:
    """Tool definitions for `fmt`, in the order given.

    `strict` asks for OpenAI chat's strict function calling; the other formats have no such
    switch and always get the plain schema.
    """
    export = _EXPORTERS[SchemaFormat(fmt)]
    return [export(tool, strict) for tool in tools]
