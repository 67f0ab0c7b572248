"""LLM-facing tool formats: OpenAI chat, OpenAI Realtime, Anthropic, Gemini and MCP."""

from patchbay.spec.formats._enum import SchemaFormat
from patchbay.spec.formats._export import export_tools

__all__ = ["SchemaFormat", "export_tools"]
