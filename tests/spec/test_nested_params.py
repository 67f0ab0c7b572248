"""Object parameters with declared fields: load-time rules and every LLM-facing format."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from patchbay._errors import ConfigError
from patchbay.spec import SchemaFormat, Tool, export_tools, load_config_text, parameters_schema
from patchbay.spec._schema import supports_strict

ADDRESS: dict[str, Any] = {
    "type": "object",
    "required": False,
    "description": "where to ship",
    "properties": {
        "city": {"type": "string", "min_length": 1},
        "zip": {"type": "string", "required": False, "pattern": "^[0-9]{5}$"},
        "country": {"type": "string", "default": "US", "enum": ["US", "CA"]},
    },
}
LINES: dict[str, Any] = {
    "type": "array",
    "min_items": 1,
    "items": {
        "type": "object",
        "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
    },
}


def tool(parameters: dict[str, Any]) -> Tool:
    return Tool.model_validate(
        {
            "name": "ship",
            "integration": "b",
            "description": "Ship an order.",
            "request": {"method": "POST", "path": "/ship", "body": {"to": "{args.address}"}},
            "parameters": parameters,
        }
    )


SHIP = tool({"address": ADDRESS, "lines": LINES})


def _nest(levels: int) -> dict[str, Any]:
    param: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        param = {"type": "object", "properties": {"inner": param}}
    return param


@pytest.mark.parametrize(
    ("param", "words"),
    [
        ({"type": "string", "properties": {"a": {}}}, "properties are only for type: object"),
        ({"type": "object", "properties": {"a.b": {}}}, "field name 'a.b'"),
        ({"type": "object", "properties": {"": {}}}, "field name ''"),
        ({"type": "object", "additional_properties": True}, "only with properties"),
        (_nest(6), "at most 5 levels"),
        ({"type": "array", "items": _nest(6)}, "at most 5 levels"),
        ({"type": "object", "properties": {"a": {"type": "strin"}}}, "type"),
    ],
)
def test_bad_nested_shapes_are_refused_at_load(param: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as info:
        tool({"p": param})
    assert words in str(info.value)


def test_five_levels_load_and_the_config_loader_names_the_place() -> None:
    assert tool({"p": _nest(5)}).parameters["p"].properties is not None
    text = """
version: 1
integrations: {b: {base_url: "https://b.example.test"}}
tools:
  ship:
    integration: b
    description: Ship.
    request: {method: POST, path: /ship, body: "{args.address}"}
    parameters:
      address:
        type: object
        properties:
          city: {type: string, pattern: "([unclosed"}
"""
    with pytest.raises(ConfigError) as info:
        load_config_text(text)
    assert "address.properties.city.pattern" in str(info.value)


def test_plain_schema_lists_required_fields_and_closes_the_object() -> None:
    schema = parameters_schema(SHIP)
    address = schema["properties"]["address"]
    assert address["type"] == "object"
    assert address["required"] == ["city"]  # zip optional, country has a default
    assert address["additionalProperties"] is False
    assert address["properties"]["country"]["default"] == "US"
    assert schema["properties"]["lines"]["items"]["required"] == ["sku", "qty"]
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"lines": [{"sku": "a", "qty": 1}], "address": {"city": "X"}})
    assert not validator.is_valid({"lines": [{"sku": "a", "qty": 1}], "address": {"zip": "1"}})
    assert not validator.is_valid({"lines": [{"sku": "a"}]})


def test_strict_schema_mirrors_top_level_rules_in_nested_objects() -> None:
    assert supports_strict(SHIP)
    schema = parameters_schema(SHIP, strict=True)
    address = schema["properties"]["address"]
    assert address["type"] == ["object", "null"]  # optional argument: nullable
    assert address["required"] == ["city", "zip", "country"]  # every field listed
    assert address["additionalProperties"] is False
    assert address["properties"]["city"]["type"] == "string"
    assert address["properties"]["zip"]["type"] == ["string", "null"]
    assert address["properties"]["country"]["enum"] == ["US", "CA", None]
    assert "default" not in address["properties"]["country"]
    items = schema["properties"]["lines"]["items"]
    assert items["required"] == ["sku", "qty"] and items["additionalProperties"] is False
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    given = {"lines": [{"sku": "a", "qty": 2}], "address": {"city": "X", "zip": None}}
    assert not validator.is_valid(given)  # strict: country must be listed (null allowed)
    given["address"]["country"] = None  # type: ignore[index]
    assert validator.is_valid(given)
    assert validator.is_valid({"lines": [{"sku": "a", "qty": 2}], "address": None})


def test_openai_strict_export_passes_the_strict_rules_checker() -> None:
    (definition,) = export_tools([SHIP], SchemaFormat.OPENAI)
    assert definition["function"]["strict"] is True
    nodes = [definition["function"]["parameters"]]
    while nodes:
        node = nodes.pop()
        if "object" in node["type"]:
            assert node["additionalProperties"] is False
            assert sorted(node["required"]) == sorted(node["properties"])
            nodes += node["properties"].values()
        if "items" in node:
            nodes.append(node["items"])


@pytest.mark.parametrize(
    "param",
    [
        {**ADDRESS, "additional_properties": True},
        {**ADDRESS, "properties": {"meta": {"type": "object"}}},
        {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "object"}}}},
    ],
)
def test_open_or_free_form_inside_falls_back_from_strict(param: dict[str, Any]) -> None:
    loose = tool({"address": param})
    assert not supports_strict(loose)
    (definition,) = export_tools([loose], SchemaFormat.OPENAI)
    assert definition["function"]["strict"] is False
    with pytest.raises(ConfigError):
        parameters_schema(loose, strict=True)


def test_additional_properties_true_is_exported_open() -> None:
    schema = parameters_schema(tool({"address": {**ADDRESS, "additional_properties": True}}))
    assert schema["properties"]["address"]["additionalProperties"] is True


@pytest.mark.parametrize("fmt", [SchemaFormat.REALTIME, SchemaFormat.ANTHROPIC, SchemaFormat.MCP])
def test_plain_formats_carry_nested_fields(fmt: SchemaFormat) -> None:
    (definition,) = export_tools([SHIP], fmt)
    key = {"realtime": "parameters", "anthropic": "input_schema", "mcp": "inputSchema"}[fmt]
    address = definition[key]["properties"]["address"]
    assert address["required"] == ["city"]
    assert set(address["properties"]) == {"city", "zip", "country"}
    assert address["additionalProperties"] is False


def test_gemini_nested_fields_optional_ones_nullable_no_additional_properties() -> None:
    (definition,) = export_tools([SHIP], SchemaFormat.GEMINI)
    address = definition["parameters"]["properties"]["address"]
    assert address["nullable"] is True
    assert address["required"] == ["city"]
    assert "nullable" not in address["properties"]["city"]
    assert address["properties"]["zip"]["nullable"] is True
    assert "additionalProperties" not in address
    item = definition["parameters"]["properties"]["lines"]["items"]
    assert item["required"] == ["sku", "qty"] and "additionalProperties" not in item


def test_audit_refuses_an_object_holding_contact_details() -> None:
    contact = {"type": "object", "properties": {"who": {"type": "string", "format": "email"}}}
    with pytest.raises(ValidationError) as info:
        Tool.model_validate(
            {
                "name": "t",
                "integration": "b",
                "description": "d",
                "request": {"method": "POST", "path": "/x"},
                "parameters": {"contact": {"type": "array", "items": contact}},
                "audit": ["contact"],
            }
        )
    assert "holds a phone number or email" in str(info.value)
