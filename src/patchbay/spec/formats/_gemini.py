"""Gemini function declarations, in Gemini's OpenAPI 3.0 subset Schema.

Shape: ai.google.dev/gemini-api/docs/function-calling (lowercase types, as its examples) and
the Schema reference of ai.google.dev/api (type, format, description, nullable, enum of
strings, items, properties, required, min/max, minLength/maxLength, pattern; no
additionalProperties; string formats only "enum" and "date-time").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from patchbay.spec._model import Tool
from patchbay.spec._schema import parameters_schema, tool_description

_KEEP = ("pattern", "minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems")
_FORMAT_WORDS = {
    "email": "an email address",
    "date": "a date, YYYY-MM-DD",
    "uri": "a URL",
}


def _convert(schema: Mapping[str, Any]) -> dict[str, Any]:
    """One JSON Schema node as a Gemini Schema node."""
    out: dict[str, Any] = {}
    kind = schema.get("type")
    if isinstance(kind, list):
        if "null" in kind:
            out["nullable"] = True
        kind = next(k for k in kind if k != "null")
    if kind is not None:
        out["type"] = kind
    description = schema.get("description")
    fmt = schema.get("format")
    if fmt == "date-time":
        out["format"] = fmt
    elif isinstance(fmt, str) and fmt in _FORMAT_WORDS:
        words = _FORMAT_WORDS[fmt]
        description = f"{description}; {words}" if description else words
    if description:
        out["description"] = description
    if "enum" in schema:
        values = [v for v in schema["enum"] if v is not None]
        if kind == "string":
            out["enum"] = values
        else:  # Gemini enums are lists of strings, marked with format "enum"
            out["format"] = "enum"
            out["enum"] = [str(v) for v in values]
    for key in _KEEP:
        if key in schema:
            out[key] = schema[key]
    if "items" in schema:
        out["items"] = _convert(schema["items"])
    if "properties" in schema:
        out["properties"] = {k: _convert(v) for k, v in schema["properties"].items()}
    if "required" in schema:
        out["required"] = list(schema["required"])
    if "properties" in out:  # as at the top level: an optional field also admits null
        for name, prop in out["properties"].items():
            if name not in out.get("required", ()):
                prop["nullable"] = True
    return out


def export(tool: Tool, strict: bool) -> dict[str, Any]:
    """`{name, description, parameters}`; a tool without parameters leaves `parameters` out."""
    declaration: dict[str, Any] = {"name": tool.name, "description": tool_description(tool)}
    if not tool.parameters:
        # Gemini refuses an OBJECT with no properties; its docs say to leave parameters unset.
        return declaration
    parameters = _convert(parameters_schema(tool))
    required = set(parameters.get("required", ()))
    for name, prop in parameters["properties"].items():
        if name not in required:
            prop["nullable"] = True
    declaration["parameters"] = parameters
    return declaration
