"""The LLM-facing tool formats patchbay exports."""

from __future__ import annotations

from enum import StrEnum


class SchemaFormat(StrEnum):
    """A voice stack's tool-definition format."""

    OPENAI = "openai"  # Chat Completions function tools
    REALTIME = "realtime"  # OpenAI Realtime session tools
    ANTHROPIC = "anthropic"  # Messages API tools
    GEMINI = "gemini"  # function declarations
    MCP = "mcp"  # Model Context Protocol tools/list entries
