"""Arguments an LLM (or whoever steers it) may send to break validation: floods, huge text,
patterns that almost match, numbers JSON cannot carry, phone numbers with extensions."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from patchbay._errors import InvalidArguments
from patchbay.runtime import ToolCall, ToolRuntime
from patchbay.spec import load_config_text
from patchbay.spec._call import CallContext
from patchbay.spec._model import Tool
from patchbay.validate import validate_arguments

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


def refusal(tool: Tool, args: Any) -> InvalidArguments:
    with pytest.raises(InvalidArguments) as info:
        validate_arguments(tool, args, CALL)
    return info.value


# --- item: an invalid_arguments answer is bounded -------------------------------------------

CONFIG = """
integrations:
  billing: {{base_url: "http://127.0.0.1:9"}}
tools:
  pay:
    integration: billing
    description: Pay an invoice.
    parameters:
      invoice_id: {{type: string, pattern: "^inv_[a-z0-9]+$", required: false}}
      note: {{type: string, required: false}}
    request: {{method: POST, path: /payments}}
    idempotency: {{key: "k-{{call.id}}"}}
    response: {{max_chars: {max_chars}}}
"""


async def llm_answer(args: dict[str, Any], max_chars: int = 4000) -> tuple[str, dict[str, Any]]:
    """What the model reads for one call of `pay`, through the runtime as every surface runs it."""
    config = load_config_text(CONFIG.format(max_chars=max_chars))
    async with ToolRuntime(config) as runtime:
        result = await runtime.execute(ToolCall("pay", args, CallContext(id="c-1")))
    assert not result.ok and result.error is not None
    assert result.error.code == "invalid_arguments"
    text = result.llm_text()
    return text, json.loads(text)


async def test_five_thousand_unknown_names_give_a_short_answer() -> None:
    args = {f"unknown_argument_{i}": i for i in range(5000)}
    text, seen = await llm_answer(args)
    assert len(text) <= 4000
    assert 1 <= len(seen["fields"]) <= 10
    named = len(seen["fields"])
    assert f"and {5000 - named} more arguments with a problem" in seen["message"]
    assert "unknown_argument_0" in seen["fields"]


@pytest.mark.parametrize("max_chars", [64, 100, 300, 4000])
async def test_huge_names_and_values_stay_within_max_chars(max_chars: int) -> None:
    long_name = "n" * 1_000_000
    args = {long_name: 1, "invoice_id": "x" * 1_000_000, "x" * 5000 + "y": 2}
    text, seen = await llm_answer(args, max_chars)
    assert len(text) <= max_chars
    assert "x" * 100 not in text  # neither the value nor the long names come back whole
    for name in seen.get("fields", {}):
        assert len(name) <= 40


async def test_field_names_are_cut_with_an_ellipsis() -> None:
    _, seen = await llm_answer({"a" * 100: 1})
    assert list(seen["fields"]) == ["a" * 39 + "…"]
    assert seen["fields"]["a" * 39 + "…"].startswith("is not an argument of this tool")


def test_a_hooks_long_words_are_cut_too() -> None:
    tool = make_tool({"a": {"type": "string"}}, response={"max_chars": 500})

    def hook(args: dict[str, Any], call: CallContext) -> dict[str, str]:
        return {f"field_{i}": "w" * 10_000 for i in range(50)}

    with pytest.raises(InvalidArguments) as info:
        validate_arguments(tool, {"a": "x"}, CALL, hooks=[hook])
    err = info.value
    shape = {"ok": False, "error": "invalid_arguments", "message": err.message}
    shape["fields"] = err.fields
    assert len(json.dumps(shape, ensure_ascii=False, separators=(",", ":"))) <= 500
    assert len(err.fields) <= 10


# --- item: patterns mean what JSON Schema means ----------------------------------------------

PM = make_tool({"pm": {"type": "string", "pattern": "^pm_[A-Za-z0-9_]+$"}})


@pytest.mark.parametrize("value", ["pm_card_visa4242\n", "pm_card\nvisa", "pm_carte_é", "pm_\r"])
def test_an_anchored_pattern_matches_the_whole_string(value: str) -> None:
    assert "pm" in refusal(PM, {"pm": value}).fields


def test_an_anchored_pattern_still_accepts_a_good_value() -> None:
    assert validate_arguments(PM, {"pm": "pm_card_visa4242"}, CALL) == {"pm": "pm_card_visa4242"}


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [
        (r"^\d{4}$", "2024", "٢٠٢٤"),  # \d is ASCII digits in JSON Schema, not Arabic-Indic
        (r"^\d{4}$", "2024", "２０２４"),  # ...nor full-width ones
        (r"^\w+$", "abc_1", "abçd"),
        (r"^a.c$", "abc", "a\rc"),  # `.` does not match a line end
        (r"^[$]+$", "$$", "$\n"),  # `$` inside a class is a dollar sign
        (r"^\$\d+$", "$5", "$5\n"),
        (r"^(?<x>a)\k<x>$", "aa", "ab"),  # ECMA named group and back-reference
        (r"inv_", "my inv_1", "inv"),  # unanchored: found anywhere, as in JSON Schema
    ],
)
def test_patterns_follow_ecma_262(pattern: str, good: str, bad: str) -> None:
    tool = make_tool({"v": {"type": "string", "pattern": pattern}})
    assert validate_arguments(tool, {"v": good}, CALL) == {"v": good}
    assert "v" in refusal(tool, {"v": bad}).fields


# --- numbers JSON cannot carry, booleans posing as numbers ------------------------------------

COUNT = make_tool({"n": {"type": "integer"}})
RATE = make_tool({"x": {"type": "number"}})


# ids: pytest would print the 5,000-digit number, which Python refuses to turn into text.
@pytest.mark.parametrize(
    "value",
    [10**5000, -(10**30), 2**53, 1e300, float("inf"), math.nan],
    ids=["5000-digits", "minus-1e30", "2**53", "1e300", "inf", "nan"],
)
def test_integers_beyond_what_json_keeps_are_refused(value: float) -> None:
    assert "n" in refusal(COUNT, {"n": value}).fields


def test_the_largest_safe_integer_passes_and_a_config_may_allow_more() -> None:
    assert validate_arguments(COUNT, {"n": 2**53 - 1}, CALL) == {"n": 2**53 - 1}
    big = make_tool({"n": {"type": "integer", "maximum": 1e18}})
    assert validate_arguments(big, {"n": 10**17}, CALL) == {"n": 10**17}


@pytest.mark.parametrize(
    "value", [10**400, float("nan"), float("-inf"), True], ids=["400-digits", "nan", "-inf", "true"]
)
def test_numbers_refuse_the_unrepresentable_and_booleans(value: float) -> None:
    assert "x" in refusal(RATE, {"x": value}).fields


def test_true_is_not_the_enum_value_1() -> None:
    tool = make_tool({"n": {"type": "integer", "enum": [0, 1]}})
    assert "n" in refusal(tool, {"n": True}).fields
    assert validate_arguments(tool, {"n": 1.0}, CALL) == {"n": 1}


# --- formats: extensions, look-alike digits, control characters -------------------------------

PHONE = make_tool({"phone": {"type": "string", "format": "e164"}})


@pytest.mark.parametrize(
    "value",
    [
        "555-123-4567 ext. 89",
        "+1 555 123 4567 x89",
        "+1-555-123-4567;ext=89",
        "tel:+1-555-123-4567;ext=89",
        "555 123 4567 extension 12",
        "5551234567#89",
    ],
)
def test_a_phone_number_with_an_extension_is_refused_in_words(value: str) -> None:
    words = refusal(PHONE, {"phone": value}).fields["phone"]
    assert "extension" in words and "not supported" in words


@pytest.mark.parametrize("value", ["555-123-4567 ok", "555-123-4567\x00", "1-800-FLOWERS"])
def test_a_phone_number_with_other_text_is_refused_not_trimmed(value: str) -> None:
    words = refusal(PHONE, {"phone": value}).fields["phone"]
    assert "digits" in words


def test_a_phone_number_in_other_digits_becomes_ascii_e164() -> None:
    cleaned = validate_arguments(PHONE, {"phone": "٥٥٥١٢٣٤٥٦٧"}, CALL)
    assert cleaned == {"phone": "+15551234567"}


@pytest.mark.parametrize(
    ("fmt", "value"),
    [
        ("date", "２０２４-06-01"),
        ("date", "٢٠٢٤-06-01"),
        ("date-time", "２０２４-06-01T10:00:00Z"),
        ("uri", "https://example.com/\x00"),
        ("uri", "https://example.com/a\u202eb"),
        ("uri", "https://example.com/a b"),
    ],
)
def test_formats_refuse_look_alike_digits_and_control_characters(fmt: str, value: str) -> None:
    tool = make_tool({"v": {"type": "string", "format": fmt}})
    assert "v" in refusal(tool, {"v": value}).fields
