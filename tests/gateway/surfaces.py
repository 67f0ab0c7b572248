"""Play tool calls through each gateway surface exactly as that platform would send them."""

from __future__ import annotations

import copy
import json
from typing import Any

from patchbay.gateway import sign_retell

from .gateway_support import (
    CALLER,
    ELEVENLABS_SECRET,
    RETELL_KEY,
    VAPI_SECRET,
    Stack,
    bearer,
    fixture,
)


def vapi_message(
    template: str, calls: list[tuple[str, str, dict[str, Any]]], call_id: str, caller: str = CALLER
) -> dict[str, Any]:
    """A documented `tool-calls` body with its tool calls replaced, each in the template's shape.

    `calls` are (toolCallId, tool name, arguments); the shape (function.arguments as a string
    or an object, flat arguments, parameters) is the first item's of the fixture.
    """
    body = fixture(template)
    message = body["message"]
    shape = message["toolCallList"][0]
    items, wrapped = [], []
    for call_ref, name, args in calls:
        item = copy.deepcopy(shape)
        item["id"] = call_ref
        if "function" in item:
            fn = item["function"]
            fn["name"] = name
            key = "arguments" if "arguments" in fn else "parameters"
            fn[key] = json.dumps(args) if isinstance(fn[key], str) else args
        else:
            item["name"] = name
            key = "arguments" if "arguments" in item else "parameters"
            item[key] = json.dumps(args) if isinstance(item[key], str) else args
        items.append(item)
        wrapped.append({"name": name, "toolCall": copy.deepcopy(item)})
    message["toolCallList"] = items
    message["toolWithToolCallList"] = wrapped
    message["call"]["id"] = call_id
    message["call"]["customer"] = {"number": caller}
    if "customer" in message:
        message["customer"] = {"number": caller}
    return body


def retell_body(name: str, args: dict[str, Any], call_id: str, caller: str = CALLER) -> bytes:
    """Retell's documented custom-function body for `name(args)` on call `call_id`."""
    body = fixture("retell_custom_function.json")
    body["name"] = name
    body["args"] = args
    body["call"]["call_id"] = call_id
    body["call"]["from_number"] = caller
    return json.dumps(body, separators=(",", ":")).encode()


def elevenlabs_body(args: dict[str, Any], call_id: str, caller: str = CALLER) -> dict[str, Any]:
    """An ElevenLabs webhook body: the LLM's properties and the dynamic-variable ones."""
    body = fixture("elevenlabs_webhook_body.json")
    del body["city"]
    body.update(args)
    body["system__conversation_id"] = call_id
    body["system__caller_id"] = caller
    return body


async def call_through(
    surface: str, s: Stack, name: str, args: dict[str, Any], call_id: str
) -> dict[str, Any]:
    """Run one tool call through `surface`; what the LLM reads back (for_llm's shape)."""
    if surface == "api":
        body = {"arguments": args, "call": {"id": call_id, "caller": CALLER}}
        status, data = await s.post(f"/tools/{name}", body, **bearer())
        assert status == 200, data
        out = {"ok": data["ok"], "result": data["result"]}
        if not data["ok"]:
            out.update(error=data["error"]["code"], message=data["error"]["message"])
        if data.get("say"):
            out["say"] = data["say"]
        return out
    if surface == "vapi":
        message = vapi_message(
            "vapi_api_reference_tool_calls.json", [("tc-1", name, args)], call_id
        )
        status, data = await s.post("/vapi", message, **{"X-Vapi-Secret": VAPI_SECRET})
        assert status == 200, data
        [entry] = data["results"]
        assert entry["toolCallId"] == "tc-1" and entry["name"] == name
        found: dict[str, Any] = json.loads(entry.get("result") or entry["error"])
        return found
    if surface == "retell":
        raw = retell_body(name, args, call_id)
        headers = {"X-Retell-Signature": sign_retell(raw, RETELL_KEY)}
        status, data = await s.post(f"/retell/{name}", raw=raw, **headers)
        assert status == 200, data
        return dict(data)
    if surface == "elevenlabs":
        body = elevenlabs_body(args, call_id)
        status, data = await s.post(
            f"/elevenlabs/{name}", body, **{"X-Elevenlabs-Secret": ELEVENLABS_SECRET}
        )
        assert status == 200, data
        return dict(data)
    raise ValueError(surface)


SURFACES = ["api", "vapi", "retell", "elevenlabs"]
