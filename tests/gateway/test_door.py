"""Bad input at the door: clear 4xx JSON per surface, logged without secrets, never a hang."""

from __future__ import annotations

import json
import logging

import pytest

from patchbay.gateway import sign_retell
from patchbay.spec import GatewayAuth

from .gateway_support import (
    ELEVENLABS_SECRET,
    RETELL_KEY,
    TOKEN,
    VAPI_SECRET,
    StackFactory,
    bearer,
    small_config,
)

VAPI = {"X-Vapi-Secret": VAPI_SECRET}
EL = {"X-Elevenlabs-Secret": ELEVENLABS_SECRET}


def _signed(raw: bytes) -> dict[str, str]:
    return {"X-Retell-Signature": sign_retell(raw, RETELL_KEY)}


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"", b"\xff\xfe"])
async def test_malformed_bodies_get_a_400_each_surface_can_parse(
    raw: bytes, stack: StackFactory
) -> None:
    async with stack(small_config()) as s:
        status, data = await s.post("/tools/echo", raw=raw, **bearer())
        assert status == 400 and data["error"]["code"] == "bad_request", data
        status, data = await s.post("/vapi", raw=raw, **VAPI)
        assert status == 400 and data["results"] == [] and isinstance(data["error"], str)
        assert data["code"] == "bad_request"
        status, data = await s.post("/retell/echo", raw=raw, **_signed(raw))
        assert status == 400 and data["ok"] is False and data["error"] == "bad_request"
        status, data = await s.post("/elevenlabs/echo", raw=raw, **EL)
        assert status == 400 and data["ok"] is False and data["error"] == "bad_request"
        assert not s.events.of_kind("tool_call")


async def test_wrong_shapes_inside_valid_json_are_400(stack: StackFactory) -> None:
    async with stack(small_config()) as s:
        status, data = await s.post("/tools/echo", {"arguments": [1]}, **bearer())
        assert status == 400 and "arguments must be a JSON object" in data["error"]["message"]
        status, data = await s.post("/vapi", {"nomessage": True}, **VAPI)
        assert (status, data["error"]) == (400, "The body has no message object.")
        no_calls = {"message": {"type": "tool-calls", "call": {"id": "c"}, "toolCallList": []}}
        status, data = await s.post("/vapi", no_calls, **VAPI)
        assert status == 400 and data["code"] == "bad_request"


async def test_unknown_tools_are_404(stack: StackFactory) -> None:
    async with stack(small_config()) as s:
        status, data = await s.post("/tools/nope", {"arguments": {}}, **bearer())
        assert status == 404
        assert data == {
            "error": {"code": "unknown_tool", "message": "There is no tool named nope."}
        }
        raw = b'{"name":"nope","args":{},"call":{"call_id":"c"}}'
        status, data = await s.post("/retell/nope", raw=raw, **_signed(raw))
        assert (status, data["error"]) == (404, "unknown_tool")
        status, data = await s.post("/elevenlabs/nope", {}, **EL)
        assert (status, data["error"]) == (404, "unknown_tool")
        assert not s.events.of_kind("tool_call")


async def test_oversized_payloads_are_413_declared_or_streamed(stack: StackFactory) -> None:
    async with stack(small_config(max_body_bytes=1024)) as s:
        big = json.dumps({"arguments": {"text": "x" * 2000}}).encode()
        status, data = await s.post("/tools/echo", raw=big, **bearer())
        assert status == 413 and data["error"]["code"] == "payload_too_large"

        async def chunks():  # no Content-Length: the limit holds while reading
            for _ in range(4):
                yield b" " * 600

        url = s.url + "/vapi"
        async with s.session.post(url, data=chunks(), headers=VAPI) as answer:
            assert answer.status == 413
            data = json.loads(await answer.read())
        assert data["code"] == "payload_too_large" and data["results"] == []
        small = json.dumps({"arguments": {"text": "ok"}}).encode()
        assert (await s.post("/tools/echo", raw=small, **bearer()))[0] == 200


async def test_missing_or_wrong_credentials_are_401(stack: StackFactory) -> None:
    body = {"arguments": {"text": "x"}}
    async with stack(small_config()) as s:
        for headers in ({}, bearer("wrong"), {"Authorization": f"Basic {TOKEN}"}, VAPI):
            status, data = await s.post("/tools/echo", body, **headers)
            assert status == 401 and data["error"]["code"] == "unauthorized", headers
        status, data = await s.post("/vapi", {"message": {}}, **{"X-Vapi-Secret": "nope"})
        assert status == 401 and data["code"] == "unauthorized" and data["results"] == []
        # the bearer token opens every surface but Retell's, and the Vapi secret also as bearer
        assert (await s.post("/vapi", {"message": {"type": "x"}}, **bearer()))[0] == 200
        assert (await s.post("/vapi", {"message": {"type": "x"}}, **bearer(VAPI_SECRET)))[0] == 200
        for path in ("/tools", "/metrics"):
            assert (await s.get(path))[0] == 401
            assert (await s.get(path, **bearer()))[0] == 200
        assert (await s.get("/healthz"))[0] == 200


async def test_a_gateway_without_credentials_refuses_everyone_unless_opened(
    stack: StackFactory,
) -> None:
    body = {"arguments": {"text": "x"}}
    async with stack(small_config(GatewayAuth())) as s:
        status, data = await s.post("/tools/echo", body, **bearer())
        assert status == 401 and "gateway.auth" in data["error"]["message"]
    async with stack(small_config(GatewayAuth(open=True))) as s:
        status, data = await s.post("/tools/echo", body)
        assert status == 200 and data["result"]["text"] == "x"


async def test_refusals_are_logged_without_secrets(
    stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    raw = b'{"name":"echo","args":{"text":"secret-arg"},"call":{"call_id":"c"}}'
    async with stack(small_config()) as s:
        await s.post("/tools/echo", {"arguments": {}}, **bearer(TOKEN + "x"))
        await s.post("/vapi", {"message": {}}, **{"X-Vapi-Secret": VAPI_SECRET + "x"})
        await s.post("/retell/echo", raw=raw, **{"X-Retell-Signature": "v=1,d=" + "0" * 64})
        await s.post("/elevenlabs/echo", {"text": 1}, **{"X-Elevenlabs-Secret": "leak-me"})
    refused = [r.getMessage() for r in caplog.records if r.name == "patchbay.gateway"]
    assert len(refused) == 4
    assert any("/retell/echo" in m and "401" in m for m in refused)
    text = "\n".join(r.getMessage() for r in caplog.records)
    for value in (TOKEN, VAPI_SECRET, RETELL_KEY, ELEVENLABS_SECRET, "leak-me", "secret-arg"):
        assert value not in text


async def test_unknown_routes_and_methods_answer_json(stack: StackFactory) -> None:
    async with stack(small_config()) as s:
        status, body = await s.get("/nowhere", **bearer())
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
        status, body = await s.get("/vapi", **bearer())
        assert status == 405 and json.loads(body)["error"]["code"] == "method_not_allowed"
