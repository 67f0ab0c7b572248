"""Tool definitions for each LLM-facing format: shapes, flatness, per-platform schema rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from patchbay.spec import Config, SchemaFormat, Tool, export_tools, load_config


@pytest.fixture
def config(example: Path, env: dict[str, str]) -> Config:
    return load_config(example, env=env)


def _walk(node: Any) -> list[dict[str, Any]]:
    """Every mapping inside a definition."""
    if isinstance(node, dict):
        return [node, *(m for v in node.values() for m in _walk(v))]
    if isinstance(node, list):
        return [m for v in node for m in _walk(v)]
    return []


def _schema(definition: dict[str, Any], fmt: SchemaFormat) -> dict[str, Any] | None:
    if fmt is SchemaFormat.OPENAI:
        return definition["function"]["parameters"]  # type: ignore[no-any-return]
    key = {
        SchemaFormat.REALTIME: "parameters",
        SchemaFormat.ANTHROPIC: "input_schema",
        SchemaFormat.GEMINI: "parameters",
        SchemaFormat.MCP: "inputSchema",
    }[fmt]
    return definition.get(key)


@pytest.mark.parametrize("fmt", list(SchemaFormat))
@pytest.mark.parametrize("strict", [True, False])
def test_every_format_is_flat(config: Config, fmt: SchemaFormat, strict: bool) -> None:
    definitions = export_tools(config.tools.values(), fmt, strict=strict)
    assert len(definitions) == 3
    for definition, tool in zip(definitions, config.tools.values(), strict=True):
        schema = _schema(definition, fmt)
        assert schema is not None
        for node in _walk(definition):
            assert not {"$ref", "$defs", "definitions", "allOf", "anyOf", "oneOf"} & set(node)
        assert schema["type"] == "object"
        assert set(schema["properties"]) == set(tool.parameters)
        assert isinstance(schema["required"], list)
        if fmt is SchemaFormat.GEMINI:
            assert all("additionalProperties" not in n for n in _walk(schema))
        else:
            assert schema["additionalProperties"] is False


def test_openai_chat_shape_and_strictness(config: Config) -> None:
    (lookup,) = export_tools([config.tools["lookup_customer_invoices"]], SchemaFormat.OPENAI)
    assert set(lookup) == {"type", "function"}
    assert lookup["type"] == "function"
    function = lookup["function"]
    assert set(function) == {"name", "description", "parameters", "strict"}
    assert function["name"] == "lookup_customer_invoices"
    assert function["strict"] is True
    assert function["parameters"]["required"] == ["phone", "email"]
    assert function["parameters"]["properties"]["email"]["type"] == ["string", "null"]
    loose = export_tools(config.tools.values(), SchemaFormat.OPENAI, strict=False)
    assert all(d["function"]["strict"] is False for d in loose)
    assert loose[1]["function"]["parameters"]["required"] == []


def test_openai_falls_back_per_tool_when_strict_cannot_describe_it() -> None:
    tool = Tool.model_validate(
        {
            "name": "t",
            "integration": "b",
            "description": "d",
            "request": {"path": "/x"},
            "parameters": {"filters": {"type": "object"}},
        }
    )
    (definition,) = export_tools([tool], SchemaFormat.OPENAI)
    assert definition["function"]["strict"] is False
    assert definition["function"]["parameters"]["properties"] == {"filters": {"type": "object"}}


def test_openai_shapes_match_the_sdk_models(config: Config) -> None:
    chat = pytest.importorskip("openai.types.chat")
    realtime = pytest.importorskip("openai.types.realtime")
    for definition in export_tools(config.tools.values(), SchemaFormat.OPENAI):
        parsed = chat.ChatCompletionFunctionTool.model_validate(definition)
        assert parsed.function.strict is True
    for definition in export_tools(config.tools.values(), SchemaFormat.REALTIME):
        parsed = realtime.RealtimeFunctionTool.model_validate(definition)
        assert parsed.type == "function" and parsed.name == definition["name"]


def test_realtime_is_flat_without_a_nested_function(config: Config) -> None:
    definitions = export_tools(config.tools.values(), SchemaFormat.REALTIME)
    for definition in definitions:
        assert set(definition) == {"type", "name", "description", "parameters"}
        assert definition["type"] == "function"
    assert definitions[2]["parameters"]["required"] == ["invoice_id", "amount", "payment_method_id"]


def test_anthropic_shape(config: Config) -> None:
    definitions = export_tools(config.tools.values(), SchemaFormat.ANTHROPIC)
    assert [set(d) for d in definitions] == [{"name", "description", "input_schema"}] * 3
    assert definitions[0]["input_schema"]["properties"]["customer_id"] == {
        "type": "string",
        "pattern": "^cus_[A-Za-z0-9]+$",
    }
    assert definitions[1]["description"].endswith("Give at least one of: phone, email.")


def test_mcp_shape_matches_the_sdk_model(config: Config) -> None:
    definitions = export_tools(config.tools.values(), SchemaFormat.MCP)
    assert [set(d) for d in definitions] == [
        {"name", "description", "inputSchema", "annotations"}
    ] * 3
    assert definitions[0]["annotations"] == {"readOnlyHint": True, "idempotentHint": True}
    assert definitions[2]["annotations"] == {"readOnlyHint": False, "idempotentHint": True}
    types = pytest.importorskip("mcp.types")
    for definition in definitions:
        tool = types.Tool.model_validate(definition)
        assert tool.input_schema == definition["inputSchema"]
        assert tool.annotations is not None


def test_gemini_declarations(config: Config) -> None:
    _, lookup, pay = export_tools(config.tools.values(), SchemaFormat.GEMINI)
    assert set(lookup) == {"name", "description", "parameters"}
    phone = lookup["parameters"]["properties"]["phone"]
    assert phone["type"] == "string" and phone["nullable"] is True
    # Gemini takes only "enum" and "date-time" string formats: email becomes words
    assert lookup["parameters"]["properties"]["email"] == {
        "type": "string",
        "description": "an email address",
        "nullable": True,
    }
    assert lookup["parameters"]["required"] == []
    amount = pay["parameters"]["properties"]["amount"]
    assert amount == {"type": "integer", "description": "cents", "minimum": 1, "maximum": 1000000}
    assert "nullable" not in amount
    types = {n["type"] for n in _walk(pay["parameters"]) if "type" in n}
    assert types <= {"string", "integer", "number", "boolean", "array", "object"}


def test_gemini_enums_are_strings_and_empty_parameters_are_left_out() -> None:
    tool = Tool.model_validate(
        {
            "name": "t",
            "integration": "b",
            "description": "d",
            "request": {"path": "/x"},
            "parameters": {
                "level": {"type": "integer", "enum": [1, 2]},
                "when": {"type": "string", "format": "date-time"},
                "kind": {"type": "string", "enum": ["a", "b"]},
            },
        }
    )
    (declaration,) = export_tools([tool], SchemaFormat.GEMINI)
    props = declaration["parameters"]["properties"]
    assert props["level"] == {"type": "integer", "format": "enum", "enum": ["1", "2"]}
    assert props["when"] == {"type": "string", "format": "date-time"}
    assert props["kind"] == {"type": "string", "enum": ["a", "b"]}
    bare = tool.model_copy(update={"parameters": {}})
    assert export_tools([bare], SchemaFormat.GEMINI) == [{"name": "t", "description": "d"}]


def test_formats_are_chosen_by_enum_value() -> None:
    assert [f.value for f in SchemaFormat] == ["openai", "realtime", "anthropic", "gemini", "mcp"]
    assert export_tools([], SchemaFormat("gemini")) == []
    with pytest.raises(ValueError):
        SchemaFormat("bard")


def test_exports_are_fresh_copies(config: Config) -> None:
    first = export_tools(config.tools.values(), SchemaFormat.ANTHROPIC)
    first[0]["input_schema"]["properties"].clear()
    again = export_tools(config.tools.values(), SchemaFormat.ANTHROPIC)
    assert again[0]["input_schema"]["properties"]
