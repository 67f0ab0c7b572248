"""Vapi server URL: every documented tool-call shape, parallel calls, failures, call lifecycle."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from patchbay.gateway._vapi import parse_vapi_calls

from .gateway_support import CALLER, VAPI_SECRET, StackFactory, fixture, small_config
from .surfaces import vapi_message

VAPI = {"X-Vapi-Secret": VAPI_SECRET}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "vapi_server_events_tool_calls.json",
            [("abc123", "sendEmail", {"emailAddress": "john@example.com", "message": "Hi!"})],
        ),
        (
            "vapi_custom_tools_request.json",
            [("toolu_01DTPAzUm5Gk3zxrpJ969oMF", "get_weather", {"location": "San Francisco"})],
        ),
        (
            "vapi_api_reference_tool_calls.json",
            [
                ("call_VaJOd8ZeZgWCEHDYomyCPfwN", "get_weather", {"location": "San Francisco"}),
                ("call_1f8c2b3a4d5e6f708192a3b4", "get_weather", {"location": "Paris"}),
            ],
        ),
    ],
)
def test_every_documented_shape_is_read(name: str, expected: list[Any]) -> None:
    calls = parse_vapi_calls(fixture(name)["message"])
    assert [(c.id, c.name, c.arguments) for c in calls] == expected
    assert all(c.problem is None for c in calls)


def test_calls_listed_only_in_tool_with_tool_call_list_are_read() -> None:
    message = fixture("vapi_custom_tools_request.json")["message"]
    del message["toolCallList"]
    [call] = parse_vapi_calls(message)
    assert (call.id, call.name, call.arguments) == (
        "toolu_01DTPAzUm5Gk3zxrpJ969oMF",
        "get_weather",
        {"location": "San Francisco"},
    )


@pytest.mark.parametrize(
    "template",
    [
        "vapi_server_events_tool_calls.json",
        "vapi_custom_tools_request.json",
        "vapi_api_reference_tool_calls.json",
    ],
)
async def test_call_id_and_caller_come_from_the_message(template: str, stack: StackFactory) -> None:
    async with stack(small_config()) as s:
        body = vapi_message(template, [("t1", "echo", {"text": "hi"})], "vapi-call-9")
        status, data = await s.post("/vapi?tenant=acme", body, **VAPI)
    assert status == 200
    [entry] = data["results"]
    assert entry["toolCallId"] == "t1" and entry["name"] == "echo"
    assert json.loads(entry["result"]) == {
        "ok": True,
        "result": {"text": "hi", "call_id": "vapi-call-9", "caller": CALLER, "tenant": "acme"},
    }


async def test_several_calls_in_one_message_run_in_parallel(stack: StackFactory) -> None:
    calls = [(f"t{i}", "slow", {"seconds": 0.4}) for i in range(3)]
    body = vapi_message("vapi_api_reference_tool_calls.json", calls, "vapi-par")
    async with stack(small_config()) as s:
        started = time.perf_counter()
        status, data = await s.post("/vapi", body, **VAPI)
        elapsed = time.perf_counter() - started
    assert status == 200
    assert [e["toolCallId"] for e in data["results"]] == ["t0", "t1", "t2"]
    assert all(json.loads(e["result"])["ok"] for e in data["results"])
    assert elapsed < 1.0  # three 0.4 s calls one after another would take 1.2 s


async def test_a_failed_tool_answers_its_error_and_fallback_words(stack: StackFactory) -> None:
    body = vapi_message("vapi_api_reference_tool_calls.json", [("t1", "broken", {})], "c-f")
    async with stack(small_config()) as s:
        status, data = await s.post("/vapi", body, **VAPI)
    assert status == 200
    [entry] = data["results"]
    assert entry["toolCallId"] == "t1" and "result" not in entry
    error = json.loads(entry["error"])
    assert error["ok"] is False and error["error"] == "upstream_unavailable"
    assert error["say"] == "Sorry, that system is down right now."
    assert entry["message"] == {
        "type": "request-failed",
        "content": "Sorry, that system is down right now.",
    }


async def test_bad_items_get_error_entries_and_the_rest_still_run(stack: StackFactory) -> None:
    body = vapi_message(
        "vapi_api_reference_tool_calls.json",
        [("t1", "echo", {"text": "a"}), ("t2", "nope", {}), ("t3", "echo", {"text": "c"})],
        "c-bad",
    )
    body["message"]["toolCallList"].append(
        {"id": "t4", "type": "function", "function": {"name": "echo", "arguments": "{not json"}}
    )
    async with stack(small_config()) as s:
        status, data = await s.post("/vapi", body, **VAPI)
    assert status == 200
    by_id = {e["toolCallId"]: e for e in data["results"]}
    assert list(by_id) == ["t1", "t2", "t3", "t4"]
    assert json.loads(by_id["t1"]["result"])["result"]["text"] == "a"
    assert json.loads(by_id["t3"]["result"])["result"]["text"] == "c"
    assert json.loads(by_id["t2"]["error"]) == {
        "ok": False,
        "error": "invalid_arguments",
        "message": "There is no tool named nope.",
    }
    assert "not valid JSON" in json.loads(by_id["t4"]["error"])["message"]


async def test_other_server_messages_get_an_empty_answer(stack: StackFactory) -> None:
    async with stack(small_config()) as s:
        status, data = await s.post(
            "/vapi", {"message": {"type": "transcript", "transcript": "hi"}}, **VAPI
        )
    assert (status, data) == (200, {})


async def test_the_end_of_call_report_drops_the_calls_state(stack: StackFactory) -> None:
    async with stack(small_config()) as s:
        ctx = s.runtime.call_context("vapi-end")
        ctx.state["customer_id"] = "cus_1"
        report = {"message": {"type": "end-of-call-report", "call": {"id": "vapi-end"}}}
        status, data = await s.post("/vapi", report, **VAPI)
        assert (status, data) == (200, {})
        assert s.runtime.call_context("vapi-end").state == {}


async def test_a_message_naming_no_call_still_gets_its_results(stack: StackFactory) -> None:
    body = vapi_message("vapi_api_reference_tool_calls.json", [("t1", "echo", {"text": "x"})], "c")
    del body["message"]["call"]
    body["message"]["chat"] = {"id": "chat-42"}
    async with stack(small_config()) as s:
        _, with_chat = await s.post("/vapi", body, **VAPI)
        del body["message"]["chat"]
        status, without = await s.post("/vapi", body, **VAPI)
    assert json.loads(with_chat["results"][0]["result"])["result"]["call_id"] == "chat-42"
    assert status == 200
    [entry] = without["results"]
    assert entry["toolCallId"] == "t1"
    assert json.loads(entry["result"])["result"]["caller"] == CALLER
