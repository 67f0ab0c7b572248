"""The flat JSON Schema of a tool's parameters, plain and OpenAI-strict."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from patchbay._errors import ConfigError
from patchbay.spec import Param, Tool, parameters_schema, supports_strict, tool_description
from patchbay.spec._schema import E164_WORDS


def _tool(parameters: dict[str, Any], **extra: Any) -> Tool:
    return Tool.model_validate(
        {
            "name": "t",
            "integration": "b",
            "description": "Do it",
            "parameters": parameters,
            "request": {"path": "/x"},
            **extra,
        }
    )


LOOKUP = _tool(
    {
        "phone": {"type": "string", "format": "e164"},
        "email": {"type": "string", "format": "email"},
        "status": {"type": "string", "enum": ["open", "paid"], "default": "open"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 50, "description": "how many"},
        "site": {"type": "string", "format": "uri"},
        "name": {"type": "string", "min_length": 2, "max_length": 40},
        "tags": {"type": "array", "items": {"type": "string"}, "min_items": 1, "max_items": 3},
    },
    require={"one_of": ["phone", "email"]},
)


def test_plain_schema_is_flat_and_closed() -> None:
    schema = parameters_schema(LOOKUP)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["limit", "site", "name", "tags"]
    props = schema["properties"]
    assert props["email"] == {"type": "string", "format": "email"}
    assert props["status"] == {"type": "string", "enum": ["open", "paid"], "default": "open"}
    assert props["limit"] == {
        "type": "integer",
        "description": "how many",
        "minimum": 1,
        "maximum": 50,
    }
    assert isinstance(props["limit"]["minimum"], int)
    assert props["site"] == {"type": "string", "format": "uri"}
    assert props["name"] == {"type": "string", "minLength": 2, "maxLength": 40}
    assert props["tags"] == {
        "type": "array",
        "items": {"type": "string"},
        "minItems": 1,
        "maxItems": 3,
    }
    jsonschema.Draft202012Validator.check_schema(schema)


def test_e164_is_a_loose_hint_not_a_strict_pattern() -> None:
    phone = parameters_schema(LOOKUP)["properties"]["phone"]
    assert phone["description"] == E164_WORDS
    assert "format" not in phone
    check = jsonschema.Draft202012Validator(phone)
    for number in ("+15551234567", "555-123-4567", "(555) 123-4567", "+44 20 7946 0958"):
        assert check.is_valid(number), number
    assert not check.is_valid("call me maybe")


def test_param_description_and_own_pattern_are_kept_for_e164() -> None:
    tool = _tool(
        {"p": {"type": "string", "format": "e164", "description": "mobile", "pattern": "^\\+1"}}
    )
    phone = parameters_schema(tool)["properties"]["p"]
    assert phone["description"] == f"mobile; {E164_WORDS}"
    assert phone["pattern"] == "^\\+1"


def test_strict_schema_follows_openai_rules() -> None:
    schema = parameters_schema(LOOKUP, strict=True)
    props = schema["properties"]
    assert schema["required"] == list(props)  # every property listed
    assert schema["additionalProperties"] is False
    assert props["phone"]["type"] == ["string", "null"]
    assert props["email"] == {"type": ["string", "null"], "format": "email"}
    # an optional enum also admits null, and the default moves into words
    assert props["status"] == {
        "type": ["string", "null"],
        "enum": ["open", "paid", None],
        "description": 'default "open"',
    }
    assert props["limit"]["type"] == "integer"  # required stays non-null
    # uri is not a format strict mode accepts: described instead
    assert props["site"] == {"type": "string", "description": "a URL"}
    assert props["name"] == {"type": "string", "minLength": 2, "maxLength": 40}
    assert props["tags"]["items"] == {"type": "string"}
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    answer = {name: None for name in props} | {
        "limit": 5,
        "site": "https://x.test",
        "name": "Jo",
        "tags": ["a"],
        "phone": "555-123-4567",
    }
    assert validator.is_valid(answer)
    assert not validator.is_valid({k: v for k, v in answer.items() if k != "email"})


def _keywords(node: Any) -> set[str]:
    """Every key used anywhere in a schema, recursively."""
    if isinstance(node, dict):
        found = set(node)
        for key, value in node.items():
            if key not in ("properties",):
                found |= _keywords(value)
            else:
                for prop in value.values():
                    found |= _keywords(prop)
        return found
    if isinstance(node, list):
        return set().union(*(_keywords(v) for v in node)) if node else set()
    return set()


def test_strict_uses_only_keywords_openai_strict_accepts() -> None:
    accepted = {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "description",
        "enum",
        "items",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
    }
    assert _keywords(parameters_schema(LOOKUP, strict=True)) <= accepted
    assert "default" not in _keywords(parameters_schema(LOOKUP, strict=True))


def test_free_form_objects_cannot_be_strict() -> None:
    tool = _tool({"filters": {"type": "object"}, "ids": {"type": "array"}})
    assert not supports_strict(tool)
    assert supports_strict(LOOKUP)
    with pytest.raises(ConfigError) as info:
        parameters_schema(tool, strict=True)
    assert info.value.location == "tools.t.parameters.filters"
    assert parameters_schema(tool)["properties"] == {
        "filters": {"type": "object"},
        "ids": {"type": "array"},
    }


def test_no_parameters_is_an_empty_closed_object() -> None:
    tool = _tool({})
    for strict in (False, True):
        assert parameters_schema(tool, strict=strict) == {
            "type": "object",
            "properties": {},
            "required": [],
            "additionalProperties": False,
        }


def test_explicit_required_wins() -> None:
    tool = _tool({"a": Param(required=False), "b": Param(default="x", required=True)})
    assert parameters_schema(tool)["required"] == ["b"]


def test_description_states_cross_argument_rules() -> None:
    assert tool_description(LOOKUP) == "Do it. Give at least one of: phone, email."
    both = _tool({"a": {}, "b": {}}, description="Go.", require={"all_of": ["a", "b"]})
    assert tool_description(both) == "Go. Give all of: a, b."
    assert tool_description(_tool({})) == "Do it"
