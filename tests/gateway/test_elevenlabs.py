"""ElevenLabs server tools: LLM properties are the arguments, dynamic variables the call."""

from __future__ import annotations

from patchbay.gateway._elevenlabs import elevenlabs_call

from .gateway_support import CALLER, ELEVENLABS_SECRET, StackFactory, bearer, fixture, small_config
from .surfaces import elevenlabs_body

EL = {"X-Elevenlabs-Secret": ELEVENLABS_SECRET}


def test_the_documented_body_splits_into_arguments_and_call() -> None:
    args, ctx = elevenlabs_call({"city"}, fixture("elevenlabs_webhook_body.json"), {}, {}, None)
    assert args == {"city": "New York"}
    assert ctx is not None
    assert (ctx.id, ctx.caller) == ("conv_01jx8p5ws0e5mj3fbz8dd2k7vr", "+15551234567")


def test_headers_bound_to_dynamic_variables_name_the_call_too() -> None:
    headers = {"x-patchbay-call-id": "conv_h", "x-patchbay-caller": "+15550002222"}
    args, ctx = elevenlabs_call({"city"}, {"city": "Oslo"}, {}, headers, "t1")
    assert args == {"city": "Oslo"}
    assert ctx is not None and (ctx.id, ctx.caller, ctx.tenant) == ("conv_h", "+15550002222", "t1")


def test_a_tool_parameter_that_looks_like_a_system_variable_stays_an_argument() -> None:
    args, _ = elevenlabs_call(
        {"system__x"}, {"system__x": 1, "system__caller_id": "+1"}, {}, {}, None
    )
    assert args == {"system__x": 1}


async def test_the_caller_id_reaches_the_tool(stack: StackFactory) -> None:
    async with stack(small_config()) as s:
        status, data = await s.post(
            "/elevenlabs/echo", elevenlabs_body({"text": "hi"}, "conv_1"), **EL
        )
    assert status == 200
    assert data == {
        "ok": True,
        "result": {"text": "hi", "call_id": "conv_1", "caller": CALLER, "tenant": None},
    }


async def test_the_shared_secret_or_the_bearer_is_required(stack: StackFactory) -> None:
    body = elevenlabs_body({"text": "hi"}, "conv_2")
    async with stack(small_config()) as s:
        assert (await s.post("/elevenlabs/echo", body, **bearer()))[0] == 200
        status, data = await s.post("/elevenlabs/echo", body, **{"X-Elevenlabs-Secret": "wrong"})
        assert status == 401 and data["error"] == "unauthorized"
        assert (await s.post("/elevenlabs/echo", body))[0] == 401


async def test_a_failure_reads_as_a_failed_tool_with_its_words(stack: StackFactory) -> None:
    async with stack(small_config()) as s:
        status, data = await s.post("/elevenlabs/broken", elevenlabs_body({}, "conv_3"), **EL)
    assert status == 200
    assert data["ok"] is False and data["error"] == "upstream_unavailable"
    assert data["say"] == "Sorry, that system is down right now."
