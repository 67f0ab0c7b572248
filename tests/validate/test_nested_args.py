"""Object arguments with declared fields: checked, normalised and refused field by field."""

from __future__ import annotations

from typing import Any

import pytest

from patchbay._errors import InvalidArguments
from patchbay.spec._call import CallContext
from patchbay.spec._model import Tool
from patchbay.validate import validate_arguments

CALL = CallContext(id="c-1")


def make_tool(parameters: dict[str, Any]) -> Tool:
    return Tool.model_validate(
        {
            "name": "t",
            "integration": "billing",
            "description": "A test tool.",
            "parameters": parameters,
            "request": {"method": "POST", "path": "/x", "body": "{args.contact}"},
        }
    )


CONTACT = make_tool(
    {
        "contact": {
            "type": "object",
            "required": False,
            "properties": {
                "name": {"type": "string", "min_length": 2},
                "phone": {"type": "string", "format": "e164", "required": False},
                "address": {
                    "type": "object",
                    "required": False,
                    "properties": {
                        "city": {"type": "string"},
                        "country": {"type": "string", "default": "US"},
                    },
                },
            },
        },
        "lines": {
            "type": "array",
            "required": False,
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
            },
        },
    }
)


def fields_of(tool: Tool, args: Any) -> dict[str, str]:
    with pytest.raises(InvalidArguments) as info:
        validate_arguments(tool, args, CALL)
    return info.value.fields


def test_nested_values_are_normalised_and_defaults_filled() -> None:
    cleaned = validate_arguments(
        CONTACT,
        {
            "contact": {"name": "Jo", "phone": "(555) 123-4567", "address": {"city": "Oslo"}},
            "lines": [{"sku": "a", "qty": 2.0}],
        },
        CALL,
    )
    assert cleaned == {
        "contact": {
            "name": "Jo",
            "phone": "+15551234567",
            "address": {"city": "Oslo", "country": "US"},
        },
        "lines": [{"sku": "a", "qty": 2}],
    }
    assert isinstance(cleaned["lines"][0]["qty"], int)


def test_a_missing_inner_field_is_named_by_its_path() -> None:
    fields = fields_of(CONTACT, {"contact": {"address": {}}})
    assert fields == {
        "contact.address.city": "is required but was not given",
        "contact.name": "is required but was not given",
    }


def test_null_means_not_given_inside_as_at_the_top_level() -> None:
    cleaned = validate_arguments(CONTACT, {"contact": {"name": "Jo", "phone": None}}, CALL)
    assert cleaned == {"contact": {"name": "Jo"}}
    assert fields_of(CONTACT, {"contact": {"name": None}}) == {
        "contact.name": "is required but was not given"
    }


def test_bad_inner_values_use_the_top_level_words() -> None:
    fields = fields_of(CONTACT, {"contact": {"name": "J", "phone": "12", "address": "Oslo"}})
    assert fields["contact.name"] == "must be at least 2 characters long"
    assert "phone number" in fields["contact.phone"]
    assert fields["contact.address"] == "must be an object with named fields, not text"


def test_unknown_inner_fields_are_refused_with_the_known_ones() -> None:
    fields = fields_of(CONTACT, {"contact": {"name": "Jo", "nickname": "J"}})
    assert fields == {
        "contact.nickname": "is not a field of this object (its fields are: name, phone, address)"
    }


def test_additional_properties_lets_other_fields_through_as_json() -> None:
    tool = make_tool(
        {
            "contact": {
                "type": "object",
                "additional_properties": True,
                "properties": {"name": {"type": "string"}},
            }
        }
    )
    cleaned = validate_arguments(tool, {"contact": {"name": "Jo", "tag": {"a": [1]}}}, CALL)
    assert cleaned == {"contact": {"name": "Jo", "tag": {"a": [1]}}}
    assert fields_of(tool, {"contact": {"tag": 1}}) == {
        "contact.name": "is required but was not given"
    }
    assert "finite" in fields_of(tool, {"contact": {"name": "Jo", "x": float("nan")}})["contact"]


def test_lists_of_objects_name_the_item_and_field() -> None:
    fields = fields_of(CONTACT, {"lines": [{"sku": "a", "qty": 1}, {"qty": 1.5}, 7]})
    assert fields == {
        "lines[1].sku": "is required but was not given",
        "lines[1].qty": "must be a whole number, not 1.5",
        "lines[2]": "must be an object with named fields, not a number",
    }


def test_nested_problems_sit_with_their_argument_in_the_message() -> None:
    with pytest.raises(InvalidArguments) as info:
        validate_arguments(CONTACT, {"lines": [{}], "contact": {}, "bogus": 1}, CALL)
    assert list(info.value.fields) == [
        "contact.name",
        "lines[0].sku",
        "lines[0].qty",
        "bogus",
    ]
    assert "contact.name, lines[0].sku, lines[0].qty: is required" in info.value.message
