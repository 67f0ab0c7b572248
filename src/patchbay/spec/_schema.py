"""A tool's parameters as one flat JSON Schema object: no $ref, every constraint inline."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from patchbay._errors import ConfigError
from patchbay.spec._model import Param, Tool
from patchbay.spec._nested import field_required

E164_WORDS = "phone number, E.164 like +15551234567 (other formats are accepted and normalised)"
# Deliberately loose: the runtime normalises "555-123-4567" or "(555) 123-4567" to E.164, so the
# pattern only keeps the LLM to characters a phone number is written with.
E164_HINT = r"^[0-9+() .-]{7,24}$"

# OpenAI structured outputs accept these string formats in strict mode; ours outside it
# (uri) are described in words instead.
_STRICT_FORMATS = frozenset({"date-time", "date", "email"})
# OpenAI strict mode: schema nesting levels and object properties in one schema, at most.
_STRICT_DEPTH = 10
_STRICT_FIELDS = 5000
_FORMAT_WORDS = {"uri": "a URL", "date": "a date, YYYY-MM-DD", "date-time": "an ISO 8601 time"}


def _number(value: float, kind: str) -> float | int:
    return int(value) if kind == "integer" and float(value).is_integer() else value


def _words(*parts: str | None) -> str | None:
    text = "; ".join(p for p in parts if p)
    return text or None


def property_schema(
    param: Param, *, strict: bool = False, nullable: bool = False
) -> dict[str, Any]:
    """The JSON Schema of one parameter; `nullable` (strict mode) also admits null."""
    schema: dict[str, Any] = {"type": [param.type, "null"] if nullable else param.type}
    hint: str | None = None
    if param.format == "e164":
        hint = E164_WORDS
        schema["pattern"] = param.pattern or E164_HINT
    elif param.format is not None:
        if strict and param.format not in _STRICT_FORMATS:
            hint = _FORMAT_WORDS.get(param.format)
        else:
            schema["format"] = param.format
    default_words = None
    if param.default is not None and strict:
        default_words = f"default {json.dumps(param.default, default=str)}"
    description = _words(param.description, hint, default_words)
    if description:
        schema["description"] = description
    if param.enum is not None:
        schema["enum"] = [*param.enum, None] if nullable else list(param.enum)
    if param.pattern is not None:
        schema["pattern"] = param.pattern
    if param.minimum is not None:
        schema["minimum"] = _number(param.minimum, param.type)
    if param.maximum is not None:
        schema["maximum"] = _number(param.maximum, param.type)
    if param.min_length is not None:
        schema["minLength"] = param.min_length
    if param.max_length is not None:
        schema["maxLength"] = param.max_length
    if param.items is not None:
        schema["items"] = property_schema(param.items, strict=strict)
    if param.properties is not None:
        schema.update(_object_schema(param.properties, param.additional_properties, strict))
    if param.min_items is not None:
        schema["minItems"] = param.min_items
    if param.max_items is not None:
        schema["maxItems"] = param.max_items
    if param.default is not None and not strict:
        schema["default"] = param.default
    return schema


def _object_schema(fields: Mapping[str, Param], extra: bool | None, strict: bool) -> dict[str, Any]:
    """`properties`, `required` and `additionalProperties` of an object with declared fields.

    As at the top level: strict mode lists every field as required, optional ones nullable.
    """
    properties = {
        name: property_schema(field, strict=strict, nullable=strict and not field_required(field))
        for name, field in fields.items()
    }
    required = [n for n, f in fields.items() if strict or field_required(f)]
    return {"properties": properties, "required": required, "additionalProperties": bool(extra)}


def _loose(param: Param, depth: int = 1) -> bool:
    """A shape strict mode cannot describe: a free-form object, a list of unknown items, or
    schemas nested deeper than strict mode allows."""
    if depth > _STRICT_DEPTH:
        return True
    if param.type == "object":
        if param.properties is None or param.additional_properties:
            return True
        return any(_loose(p, depth + 1) for p in param.properties.values())
    if param.type == "array":
        return param.items is None or _loose(param.items, depth + 1)
    return False


def _fields(param: Param) -> int:
    """Object properties inside `param` (strict mode bounds them across a schema)."""
    inner = param.properties or {}
    below = sum(_fields(p) for p in inner.values())
    return len(inner) + below + (_fields(param.items) if param.items is not None else 0)


def supports_strict(tool: Tool) -> bool:
    """Whether OpenAI strict mode can describe every parameter of `tool`."""
    if any(_loose(p) for p in tool.parameters.values()):
        return False
    return len(tool.parameters) + sum(map(_fields, tool.parameters.values())) <= _STRICT_FIELDS


def parameters_schema(tool: Tool, strict: bool = False) -> dict[str, Any]:
    """The flat JSON Schema object of `tool`'s arguments.

    Strict mode follows OpenAI structured outputs: every property is required, optional ones
    also admit null, and only keywords strict mode accepts are used.
    """
    if strict:
        for name, param in tool.parameters.items():
            if _loose(param):
                raise ConfigError(
                    "a free-form object or list, one with additional_properties, or one "
                    f"nested over {_STRICT_DEPTH} levels cannot be described in strict mode",
                    f"tools.{tool.name}.parameters.{name}",
                )
    properties = {
        name: property_schema(param, strict=strict, nullable=strict and not tool.is_required(name))
        for name, param in tool.parameters.items()
    }
    required = [n for n in tool.parameters if strict or tool.is_required(n)]
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def tool_description(tool: Tool) -> str:
    """The description the LLM reads, with cross-argument constraints in words."""
    text = tool.description.strip()
    extra = []
    if tool.require is not None and tool.require.one_of:
        extra.append(f"Give at least one of: {', '.join(tool.require.one_of)}.")
    if tool.require is not None and tool.require.all_of:
        extra.append(f"Give all of: {', '.join(tool.require.all_of)}.")
    if extra and text and not text.endswith((".", "!", "?")):
        text += "."
    return " ".join([text, *extra]) if text else " ".join(extra)
