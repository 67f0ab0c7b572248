"""Arguments no request could carry: text with lone surrogates, and free-form objects or lists
that JSON cannot write (too deep, too big, NaN, 5,000-digit integers). Each is refused as
invalid_arguments naming the field, and nothing is sent."""

from __future__ import annotations

import enum
import json
import math
from collections import OrderedDict
from typing import Any

import pytest

from patchbay import CallContext, ToolCall, ToolRuntime
from patchbay._errors import InvalidArguments
from patchbay.http import Request, Response
from patchbay.spec import load_config_text
from patchbay.spec._model import Tool
from patchbay.validate import validate_arguments

CALL = CallContext(id="c-1")


def make_tool(parameters: dict[str, Any]) -> Tool:
    return Tool.model_validate(
        {
            "name": "t",
            "integration": "svc",
            "description": "A test tool.",
            "parameters": parameters,
            "request": {"method": "GET", "path": "/x"},
        }
    )


def refusal(tool: Tool, args: dict[str, Any]) -> InvalidArguments:
    with pytest.raises(InvalidArguments) as info:
        validate_arguments(tool, args, CALL)
    return info.value


def deep_object(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def deep_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


class Kind(enum.StrEnum):
    BOOK = "book"


class Size(enum.IntEnum):
    SMALL = 1


TEXT = make_tool({"name": {"type": "string"}})
CODE = make_tool({"code": {"type": "string", "format": "email"}})
NAMES = make_tool({"names": {"type": "array", "items": {"type": "string"}}})
ATTRS = make_tool({"attrs": {"type": "object"}})
TAGS = make_tool({"tags": {"type": "array"}})


# --- text with lone surrogates --------------------------------------------------------------


@pytest.mark.parametrize("value", ["\ud800", "first edition\ud800", "ab\udfffcd", "\udc00\ud800"])
def test_text_with_a_lone_surrogate_is_refused_naming_the_field(value: str) -> None:
    words = refusal(TEXT, {"name": value}).fields["name"]
    assert "broken characters" in words


def test_a_formatted_text_with_a_lone_surrogate_is_refused_too() -> None:
    assert "broken characters" in refusal(CODE, {"code": "a\ud800@example.com"}).fields["code"]


def test_a_list_item_with_a_lone_surrogate_is_refused() -> None:
    words = refusal(NAMES, {"names": ["ok", "bad\ud800"]}).fields["names"]
    assert "item 1" in words and "broken characters" in words


@pytest.mark.parametrize("value", ["café", "\U0001f4b3 card", "٥٥٥", "日本語", "a\u200bb"])
def test_real_unicode_text_is_kept(value: str) -> None:
    assert validate_arguments(TEXT, {"name": value}, CALL) == {"name": value}


def test_an_unknown_argument_named_with_a_lone_surrogate_gets_an_encodable_answer() -> None:
    err = refusal(TEXT, {"name": "ok", "\ud800x": 1})
    text = json.dumps({"message": err.message, "fields": err.fields}, ensure_ascii=False)
    text.encode()  # a lone surrogate here would make the answer unsendable


# --- free-form objects and lists -------------------------------------------------------------

BAD_OBJECTS = [
    (deep_object(1000), "nested too deeply"),
    (deep_object(32), "nested too deeply"),  # 33 levels with the parameter itself
    ({"n": 10**5000}, "far too large"),
    ({"n": -(2**53)}, "far too large"),
    ({"n": math.nan}, "finite"),
    ({"n": [1.0, math.inf]}, "finite"),
    ({"\ud800": "\udfff"}, "broken characters"),
    ({"a": {"b": ["ok", "x\udc00"]}}, "broken characters"),
    ({"a": {1: "one"}}, "named fields"),
    ({"a": b"bytes"}, "JSON values"),
    ({"a": {1, 2}}, "JSON values"),
    ({"k": list(range(20_000))}, "too large"),
    ({"k": "x" * 1_100_000}, "too large"),
]


@pytest.mark.parametrize(
    ("value", "words"),
    BAD_OBJECTS,
    ids=[
        "deep_1000",
        "deep_33_levels",
        "5000_digits",
        "beyond_2**53",
        "nan",
        "inf_in_list",
        "surrogate_key_and_value",
        "surrogate_deep_inside",
        "integer_key",
        "bytes",
        "set",
        "20k_values",
        "1.1M_characters",
    ],
)
def test_an_object_json_cannot_carry_is_refused_naming_the_field(value: Any, words: str) -> None:
    assert words in refusal(ATTRS, {"attrs": value}).fields["attrs"]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (deep_list(5000), "nested too deeply"),
        ([math.nan], "finite"),
        ([10**5000], "far too large"),
        (["\ud800"], "broken characters"),
        ([{"\ud800": 1}], "broken characters"),
        (list(range(10_001)), "too large"),
    ],
    ids=["deep_5000", "nan", "5000_digits", "surrogate", "surrogate_key", "10001_values"],
)
def test_a_list_without_items_json_cannot_carry_is_refused(value: Any, words: str) -> None:
    assert words in refusal(TAGS, {"tags": value}).fields["tags"]


def test_ordinary_objects_and_lists_pass_unchanged() -> None:
    attrs = {
        "colour": "rouge café",
        "size": 3,
        "ratio": 0.5,
        "big": 2**53 - 1,
        "flags": [True, False, None],
        "nested": deep_object(30),  # 32 levels with "nested" and the parameter
    }
    assert validate_arguments(ATTRS, {"attrs": attrs}, CALL) == {"attrs": attrs}
    tags = list(range(9_999))
    assert validate_arguments(TAGS, {"tags": tags}, CALL) == {"tags": tags}


def test_enum_members_and_dict_subclasses_are_checked_as_their_json_values() -> None:
    attrs = {"kind": Kind.BOOK, "n": Size.SMALL, "more": OrderedDict(a=1)}
    assert validate_arguments(ATTRS, {"attrs": attrs}, CALL) == {"attrs": attrs}
    bad = {"more": OrderedDict(a=math.nan)}
    assert "finite" in refusal(ATTRS, {"attrs": bad}).fields["attrs"]


# --- through the runtime: refused, and nothing sent -------------------------------------------

CONFIG = """
version: 1
integrations:
  svc:
    base_url: "http://127.0.0.1:9/api"
    retry: {attempts: 1}
tools:
  get_thing:
    integration: svc
    description: Fetch a thing by name.
    parameters:
      name: {type: string}
      note: {type: string, required: false}
      q: {type: string, required: false}
    request:
      method: GET
      path: "/things/{name}"
      query: {q: "{args.q}"}
      headers: {X-Note: "{args.note}"}
  update_thing:
    integration: svc
    description: Update a thing's attributes.
    parameters:
      name: {type: string}
      attrs: {type: object}
      tags: {type: array, required: false}
    request:
      method: POST
      path: "/things/{name}"
      body: {attrs: "{args.attrs}", tags: "{args.tags}"}
    idempotency: {key: "call_{call.id}_thing_{args.name}"}
"""


class Recording:
    """An upstream that answers 200 at once and keeps what it was sent."""

    def __init__(self) -> None:
        self.sent: list[Request] = []

    async def send(self, request: Request, timeout_s: float) -> Response:
        self.sent.append(request)
        return Response(200, {"content-type": "application/json"}, b'{"ok": true}')

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        ("get_thing", {"name": "\ud800"}, "name"),
        ("get_thing", {"name": "book", "note": "first edition\ud800"}, "note"),
        ("get_thing", {"name": "book", "q": "x\udfff"}, "q"),
        ("update_thing", {"name": "book", "attrs": deep_object(1000)}, "attrs"),
        ("update_thing", {"name": "book", "attrs": {"n": 10**5000}}, "attrs"),
        ("update_thing", {"name": "book", "attrs": {"n": math.nan}}, "attrs"),
        ("update_thing", {"name": "book", "attrs": {"\ud800": "\udfff"}}, "attrs"),
        ("update_thing", {"name": "book", "attrs": {}, "tags": [math.inf]}, "tags"),
    ],
    ids=[
        "path",
        "header",
        "query",
        "deep_object",
        "5000_digits",
        "nan",
        "surrogates",
        "inf_in_list",
    ],
)
async def test_the_runtime_refuses_and_sends_nothing(
    tool: str, args: dict[str, Any], field: str
) -> None:
    upstream = Recording()
    async with ToolRuntime(load_config_text(CONFIG), transport=upstream) as runtime:
        result = await runtime.execute(ToolCall(tool, args, CallContext(id="c-1")))
    assert result.error is not None
    assert result.error.code == "invalid_arguments"
    assert field in result.error.fields
    assert upstream.sent == []
    result.llm_text().encode()  # the answer itself is sendable
