"""Hostile input at the door: deep JSON, huge numbers, lone surrogates, misplaced arguments,
oversized Vapi batches. Every answer is JSON with a specific 4xx, or the tool results."""

from __future__ import annotations

import json
from typing import Any

import pytest

from patchbay.gateway import sign_retell
from patchbay.runtime import ErrorInfo, ToolResult

from .gateway_support import (
    ELEVENLABS_SECRET,
    RETELL_KEY,
    VAPI_SECRET,
    StackFactory,
    bearer,
    small_config,
)

VAPI = {"X-Vapi-Secret": VAPI_SECRET}
EL = {"X-Elevenlabs-Secret": ELEVENLABS_SECRET}
DEEP = b"[" * 200_000 + b"]" * 200_000


def _signed(raw: bytes) -> dict[str, str]:
    return {"X-Retell-Signature": sign_retell(raw, RETELL_KEY)}


async def test_json_nested_200000_deep_is_a_400_on_every_route(stack: StackFactory) -> None:
    async with stack(small_config(max_body_bytes=1_000_000)) as s:
        status, data = await s.post("/tools/echo", raw=DEEP, **bearer())
        assert status == 400 and data["error"]["code"] == "bad_request", data
        assert "nested too deeply" in data["error"]["message"]
        status, data = await s.post("/vapi", raw=DEEP, **VAPI)
        assert status == 400 and data["results"] == [] and data["code"] == "bad_request"
        status, data = await s.post("/retell/echo", raw=DEEP, **_signed(DEEP))
        assert status == 400 and data["error"] == "bad_request"
        status, data = await s.post("/elevenlabs/echo", raw=DEEP, **EL)
        assert status == 400 and data["error"] == "bad_request"
        status, data = await s.post("/calls/c-1/start", raw=DEEP, **bearer())
        assert status == 400 and data["error"]["code"] == "bad_request"
        # Deep JSON inside a Vapi call's arguments string costs that call only.
        deep_args = "[" * 100_000 + "]" * 100_000
        message = {
            "type": "tool-calls",
            "call": {"id": "deep-1"},
            "toolCallList": [
                {"id": "t1", "name": "echo", "arguments": deep_args},
                {"id": "t2", "name": "echo", "arguments": {"text": "fine"}},
            ],
        }
        status, data = await s.post("/vapi", {"message": message}, **VAPI)
        assert status == 200
        bad, good = data["results"]
        assert bad["toolCallId"] == "t1" and "nested too deeply" in bad["error"]
        assert json.loads(good["result"])["result"]["text"] == "fine"
        assert len(s.events.of_kind("tool_call")) == 1


async def test_retell_signature_with_a_5000_digit_timestamp_is_401(stack: StackFactory) -> None:
    async with stack(small_config()) as s:
        raw = b'{"name":"echo","args":{},"call":{"call_id":"c"}}'
        forged = f"v={'9' * 5000},d={'0' * 64}"
        status, data = await s.post("/retell/echo", raw=raw, **{"X-Retell-Signature": forged})
        assert (status, data["error"]) == (401, "unauthorized")
        assert not s.events.of_kind("tool_call")


async def test_a_huge_integer_argument_is_an_answer_not_a_crash(stack: StackFactory) -> None:
    async with stack(small_config()) as s:
        for digits in (5000, 4000):  # past Python's int() limit, and just inside it
            raw = b'{"arguments":{"text":' + b"7" * digits + b"}}"
            status, data = await s.post("/tools/echo", raw=raw, **bearer())
            assert status in (200, 400), (digits, status, data)
            if status == 200:
                assert data["error"]["code"] == "invalid_arguments"
            else:
                assert data["error"]["code"] == "bad_request"


# Lone surrogates, as JSON escapes (put where "@" is): Python reads them into strings UTF-8
# cannot encode.
LONE = "\\ud800"


@pytest.mark.parametrize(
    "raw",
    [
        '{"arguments":{"@":"x"}}',  # an argument name
        '{"arguments":{"text":"a@b"}}',  # an argument value, echoed back
        '{"arguments":{"text":"x"},"call":{"id":"c-@"}}',  # the call id
    ],
)
async def test_lone_surrogates_still_get_a_json_answer(raw: str, stack: StackFactory) -> None:
    async with stack(small_config()) as s:
        status, data = await s.post("/tools/echo", raw=raw.replace("@", LONE).encode(), **bearer())
        assert status == 200, data
        assert data["tool"] == "echo" and set(data) >= {"ok", "error", "result", "meta"}
        # whatever the answer quotes back is valid text: a broken character never goes out raw
        json.dumps(data, ensure_ascii=False).encode("utf-8")


async def test_one_bad_call_in_a_vapi_batch_does_not_cost_the_others(s_vapi: Any) -> None:
    s = s_vapi
    raw = (
        '{"message":{"type":"tool-calls","call":{"id":"b-1"},"toolCallList":['
        '{"id":"t1","name":"echo","arguments":{"text":"one"}},'
        '{"id":"t-@","name":"echo","arguments":{"@":"x"}},'
        '{"id":"t3","name":"echo","arguments":{"text":"three"}}]}}'
    ).replace("@", LONE)
    status, data = await s.post("/vapi", raw=raw.encode(), **VAPI)
    assert status == 200, data
    first, bad, third = data["results"]
    assert json.loads(first["result"])["result"]["text"] == "one"
    assert json.loads(third["result"])["result"]["text"] == "three"
    assert bad["toolCallId"] == "t-\ufffd"
    assert json.loads(bad["error"])["error"] == "invalid_arguments"


@pytest.fixture
async def s_vapi(stack: StackFactory) -> Any:
    async with stack(small_config()) as s:
        yield s


def test_tool_result_to_json_never_raises() -> None:
    result = ToolResult(
        ok=False,
        tool="echo\ud800",
        call_id="c\udfff",
        error=ErrorInfo("invalid_arguments", "bad", fields={"\ud800": "is not an argument"}),
        say="\ud83d\ude00 sorry",  # a proper surrogate pair is kept as its character
    )
    data = json.loads(result.to_json())
    assert data["tool"] == "echo\ufffd" and data["call_id"] == "c\ufffd"
    assert data["error"]["fields"] == {"\ufffd": "is not an argument"}
    assert data["say"] == "\U0001f600 sorry"
    assert json.loads(result.llm_text())["fields"] == {"\ufffd": "is not an argument"}


async def test_arguments_at_the_top_level_are_refused_saying_where_they_go(
    stack: StackFactory,
) -> None:
    async with stack(small_config()) as s:
        status, data = await s.post("/tools/echo", {"text": "hello"}, **bearer())
        assert status == 400 and data["error"]["code"] == "bad_request"
        assert "'text'" in data["error"]["message"]
        assert '"arguments"' in data["error"]["message"]
        status, data = await s.post("/tools/echo", {"text": "hi", "call": {"id": "c"}}, **bearer())
        assert status == 400 and "'text'" in data["error"]["message"]
        # Only a call: the tool gets no arguments, and its own answer says what is missing.
        status, data = await s.post("/tools/echo", {"call": {"id": "c"}}, **bearer())
        assert status == 200 and data["error"]["fields"] == {
            "text": "is required but was not given"
        }
        assert len(s.events.of_kind("tool_call")) == 1


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"arguments": {}, "call": "c-1"}, "call must be a JSON object"),
        ({"arguments": {}, "call": [1]}, "call must be a JSON object"),
        ({"arguments": {}, "call": {"id": 42}}, "call.id must be a string"),
        ({"arguments": {}, "call": {"id": "c", "caller": {}}}, "call.caller must be a string"),
        ({"arguments": [1, 2]}, "arguments must be a JSON object"),
        ({"arguments": "[1]"}, "arguments must be a JSON object"),
    ],
)
async def test_wrong_types_in_a_tools_body_are_400_saying_which(
    body: dict[str, Any], words: str, stack: StackFactory
) -> None:
    async with stack(small_config()) as s:
        status, data = await s.post("/tools/echo", body, **bearer())
        assert status == 400 and words in data["error"]["message"], data
        assert not s.events.of_kind("tool_call")


async def test_a_vapi_message_runs_at_most_max_tool_calls_per_message(
    stack: StackFactory,
) -> None:
    async with stack(small_config(max_tool_calls_per_message=3)) as s:
        calls = [{"id": f"t{i}", "name": "echo", "arguments": {"text": str(i)}} for i in range(8)]
        message = {"type": "tool-calls", "call": {"id": "fan-1"}, "toolCallList": calls}
        status, data = await s.post("/vapi", {"message": message}, **VAPI)
        assert status == 200
        results = data["results"]
        assert [r["toolCallId"] for r in results] == [f"t{i}" for i in range(8)]
        assert all("result" in r for r in results[:3])
        for r in results[3:]:
            words = json.loads(r["error"])
            assert words["error"] == "client_error" and "at most 3 tool calls" in words["message"]
        assert len(s.events.of_kind("tool_call")) == 3


async def test_the_default_limit_is_16_tool_calls(stack: StackFactory) -> None:
    async with stack(small_config()) as s:
        calls = [{"id": f"t{i}", "name": "echo", "arguments": {}} for i in range(40)]
        message = {"type": "tool-calls", "call": {"id": "fan-2"}, "toolCallList": calls}
        status, data = await s.post("/vapi", {"message": message}, **VAPI)
        assert status == 200 and len(data["results"]) == 40
        assert len(s.events.of_kind("tool_call")) == 16


@pytest.mark.parametrize("args", [[1, 2], 5, "[1]"])
async def test_retell_args_that_are_not_an_object_are_a_400(args: Any, stack: StackFactory) -> None:
    async with stack(small_config()) as s:
        raw = json.dumps({"name": "echo", "args": args, "call": {"call_id": "c"}}).encode()
        status, data = await s.post("/retell/echo", raw=raw, **_signed(raw))
        assert (status, data["error"]) == (400, "bad_request"), data
        assert data["message"] == "args must be a JSON object."
        assert not s.events.of_kind("tool_call")
