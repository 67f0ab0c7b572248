"""Argument validation: every check names the bad field in words an LLM can act on."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from patchbay._errors import ConfigError, InvalidArguments
from patchbay.spec._call import CallContext
from patchbay.spec._model import Tool
from patchbay.validate import ToolValidator, tool_validator, validate_arguments

CALL = CallContext(id="c-1")


def make_tool(parameters: dict[str, Any], **extra: Any) -> Tool:
    return Tool.model_validate(
        {
            "name": "t",
            "integration": "billing",
            "description": "A test tool.",
            "parameters": parameters,
            "request": {"method": "GET", "path": "/x"},
            **extra,
        }
    )


def fields_of(tool: Tool, args: Any) -> dict[str, str]:
    with pytest.raises(InvalidArguments) as info:
        validate_arguments(tool, args, CALL)
    assert info.value.tool == "t"
    assert info.value.call_id == "c-1"
    return info.value.fields


PAYMENT = make_tool(
    {
        "invoice_id": {"type": "string", "pattern": "^inv_[A-Za-z0-9]+$"},
        "amount": {"type": "integer", "minimum": 1, "maximum": 1000000, "description": "cents"},
        "payment_method_id": {"type": "string"},
    }
)


def test_good_arguments_come_back_cleaned() -> None:
    args = {"invoice_id": "inv_101", "amount": 24700, "payment_method_id": "pm_1"}
    assert validate_arguments(PAYMENT, args, CALL) == args


def test_each_bad_field_is_named_with_words() -> None:
    with pytest.raises(InvalidArguments) as info:
        validate_arguments(PAYMENT, {"invoice_id": "101", "amount": 2_000_000, "tip": 5}, CALL)
    err = info.value
    assert err.fields == {
        "invoice_id": "does not have the expected form (pattern ^inv_[A-Za-z0-9]+$)",
        "amount": "must be at most 1000000 (cents)",
        "payment_method_id": "is required but was not given",
        "tip": "is not an argument of this tool "
        "(its arguments are: invoice_id, amount, payment_method_id)",
    }
    for name in ("invoice_id", "amount", "payment_method_id", "tip"):
        assert name in err.message
    assert err.code.value == "invalid_arguments"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("2470", "must be a whole number, not text"),
        (True, "must be a whole number, not true/false"),
        (247.5, "must be a whole number (cents), not 247.5"),
        (0, "must be at least 1 (cents)"),
        (None, "is required but was not given"),
        ([1], "must be a whole number, not a list"),
    ],
)
def test_integer_checks(value: Any, words: str) -> None:
    args = {"invoice_id": "inv_1", "amount": value, "payment_method_id": "pm"}
    assert fields_of(PAYMENT, args) == {"amount": words}


def test_integral_float_is_accepted_as_integer() -> None:
    args = {"invoice_id": "inv_1", "amount": 24700.0, "payment_method_id": "pm"}
    cleaned = validate_arguments(PAYMENT, args, CALL)
    assert cleaned["amount"] == 24700
    assert type(cleaned["amount"]) is int


def test_number_boolean_and_string_types() -> None:
    tool = make_tool(
        {
            "ratio": {"type": "number", "minimum": 0, "maximum": 1.5},
            "urgent": {"type": "boolean"},
            "note": {"type": "string"},
        }
    )
    ok = validate_arguments(tool, {"ratio": 1, "urgent": False, "note": "hi"}, CALL)
    assert ok == {"ratio": 1, "urgent": False, "note": "hi"}
    assert fields_of(tool, {"ratio": True, "urgent": "yes", "note": 3}) == {
        "ratio": "must be a number, not true/false",
        "urgent": "must be true or false, not text",
        "note": "must be text, not a number",
    }
    assert fields_of(tool, {"ratio": 1.6, "urgent": 1, "note": "x"}) == {
        "ratio": "must be at most 1.5",
        "urgent": "must be true or false, not a number",
    }
    assert fields_of(tool, {"ratio": float("nan"), "urgent": True, "note": "x"}) == {
        "ratio": "must be a finite number"
    }


def test_enum_keeps_booleans_and_numbers_apart() -> None:
    tool = make_tool(
        {"size": {"type": "integer", "enum": [1, 2]}, "color": {"enum": ["red", "blue"]}}
    )
    assert validate_arguments(tool, {"size": 2, "color": "red"}, CALL) == {
        "size": 2,
        "color": "red",
    }
    assert fields_of(tool, {"size": True, "color": "green"}) == {
        "size": "must be a whole number, not true/false",
        "color": "must be one of: red, blue",
    }
    flag = make_tool({"flag": {"type": "boolean", "enum": [True]}})
    assert fields_of(flag, {"flag": False}) == {"flag": "must be one of: true"}


def test_pattern_uses_search_semantics() -> None:
    tool = make_tool({"ref": {"type": "string", "pattern": "[0-9]{3}"}})
    assert validate_arguments(tool, {"ref": "ab123cd"}, CALL) == {"ref": "ab123cd"}
    assert "ref" in fields_of(tool, {"ref": "ab12"})


def test_string_length() -> None:
    tool = make_tool({"code": {"type": "string", "min_length": 2, "max_length": 4}})
    assert fields_of(tool, {"code": "a"}) == {"code": "must be at least 2 characters long"}
    assert fields_of(tool, {"code": "abcde"}) == {"code": "must be at most 4 characters long"}
    assert validate_arguments(tool, {"code": "abcd"}, CALL) == {"code": "abcd"}


def test_arrays_check_size_and_every_item() -> None:
    tool = make_tool(
        {
            "phones": {
                "type": "array",
                "items": {"type": "string", "format": "e164"},
                "min_items": 1,
                "max_items": 3,
            }
        }
    )
    cleaned = validate_arguments(tool, {"phones": ["555-123-4567", "+44 20 7946 0958"]}, CALL)
    assert cleaned == {"phones": ["+15551234567", "+442079460958"]}
    assert fields_of(tool, {"phones": []}) == {"phones": "must have at least 1 item"}
    assert fields_of(tool, {"phones": ["1"] * 4}) == {"phones": "must have at most 3 items"}
    assert fields_of(tool, {"phones": "555-123-4567"}) == {"phones": "must be a list, not text"}
    words = fields_of(tool, {"phones": ["555-123-4567", "hello", 7]})["phones"]
    assert words.startswith("item 1 is not a phone number")
    assert "item 2 must be text, not a number" in words


def test_object_type() -> None:
    tool = make_tool({"meta": {"type": "object"}})
    assert validate_arguments(tool, {"meta": {"a": 1}}, CALL) == {"meta": {"a": 1}}
    assert fields_of(tool, {"meta": [1]}) == {
        "meta": "must be an object with named fields, not a list"
    }


def test_null_optional_is_absent_and_defaults_are_filled() -> None:
    tool = make_tool(
        {
            "query": {"type": "string"},
            "limit": {"type": "integer", "default": 10},
            "tags": {"type": "array", "default": ["a"]},
            "note": {"type": "string", "required": False},
        }
    )
    first = validate_arguments(tool, {"query": "x", "note": None, "limit": None}, CALL)
    assert first == {"query": "x", "limit": 10, "tags": ["a"]}
    first["tags"].append("b")  # a caller changing its copy does not change the default
    assert validate_arguments(tool, {"query": "x"}, CALL)["tags"] == ["a"]
    assert fields_of(tool, {"query": None}) == {"query": "is required but was not given"}


def test_one_of_needs_at_least_one_non_null() -> None:
    tool = make_tool(
        {"phone": {"type": "string", "format": "e164"}, "email": {"type": "string"}},
        require={"one_of": ["phone", "email"]},
    )
    assert validate_arguments(tool, {"email": "a@b.co", "phone": None}, CALL) == {"email": "a@b.co"}
    words = "give at least one of phone, email; none was given"
    assert fields_of(tool, {"phone": None}) == {"phone": words, "email": words}
    # a bad value is reported as bad, not as missing
    assert list(fields_of(tool, {"phone": "12"})) == ["phone"]


def test_all_of_needs_every_one_once_one_is_given() -> None:
    tool = make_tool(
        {
            "start": {"type": "string", "format": "date", "required": False},
            "end": {"type": "string", "format": "date", "required": False},
        },
        require={"all_of": ["start", "end"]},
    )
    assert validate_arguments(tool, {}, CALL) == {}
    assert fields_of(tool, {"start": "2024-06-01"}) == {
        "end": "must be given together with the others of start, end"
    }
    both = {"start": "2024-06-01", "end": "2024-06-30"}
    assert validate_arguments(tool, both, CALL) == both


def test_arguments_that_are_not_an_object() -> None:
    assert fields_of(PAYMENT, ["inv_1"]) == {
        "_arguments": "must be a JSON object of named arguments"
    }
    assert "7" in fields_of(make_tool({}), {7: "x"})


def test_tool_without_parameters_rejects_any_argument() -> None:
    tool = make_tool({})
    assert validate_arguments(tool, {}, CALL) == {}
    assert fields_of(tool, {"x": 1}) == {
        "x": "is not an argument of this tool (its arguments are: none)"
    }


def test_bad_input_only_ever_raises_invalid_arguments() -> None:
    weird: list[Any] = [object(), b"bytes", {1, 2}, float("inf"), -0.0, "", [None], {"k": object()}]
    tool = make_tool(
        {
            "s": {"type": "string", "format": "email"},
            "i": {"type": "integer"},
            "a": {"type": "array", "items": {"type": "integer"}},
            "o": {"type": "object"},
        }
    )
    for value in weird:
        for name in ("s", "i", "a", "o"):
            args = {"s": "a@b.co", "i": 1, "a": [], "o": {}, name: value}
            with contextlib.suppress(InvalidArguments):
                validate_arguments(tool, args, CALL)


def test_validators_are_compiled_once_per_tool() -> None:
    assert tool_validator(PAYMENT) is tool_validator(PAYMENT)
    twin = make_tool(dict(PAYMENT.parameters))
    assert tool_validator(twin) is not tool_validator(PAYMENT)


def test_broken_pattern_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        ToolValidator(make_tool({"x": {"type": "string", "pattern": "("}}))
    assert info.value.location == "tools.t.parameters.x"
