"""A gateway caller's W3C `traceparent` is the parent of the tool calls its request runs."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from patchbay import ToolRuntime
from patchbay.gateway import create_app
from patchbay.integrations._mcp import mcp_asgi
from patchbay.observe import OtlpObserver, otlp_observer
from patchbay.spec import Config, GatewayAuth, GatewaySpec, load_config

from .otel_support import OtlpReceiver, attrs, serving

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "billing" / "patchbay.yaml"
TOKEN = "gw-token-5e1f0c"
CUSTOMER = "cus_8F2kLq"
ARGS = {"customer_id": CUSTOMER}


def _bodies(call_id: str) -> dict[str, tuple[str, Any]]:
    """(path, body) of one get_customer call as each surface's caller sends it."""
    return {
        "tools": ("/tools/get_customer", {"arguments": ARGS, "call": {"id": call_id}}),
        "vapi": (
            "/vapi",
            {
                "message": {
                    "type": "tool-calls",
                    "call": {"id": call_id},
                    "toolCallList": [
                        {
                            "id": "call_vapi_7",
                            "type": "function",
                            "function": {"name": "get_customer", "arguments": ARGS},
                        }
                    ],
                }
            },
        ),
        "retell": (
            "/retell/get_customer",
            {"name": "get_customer", "args": ARGS, "call": {"call_id": call_id}},
        ),
        "elevenlabs": (
            "/elevenlabs/get_customer",
            {**ARGS, "system__conversation_id": call_id},
        ),
        "mcp": (
            "/mcp",
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "get_customer", "arguments": ARGS},
            },
        ),
    }


@pytest.fixture
def config(billing_url: str, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("OTEL_GW_TOKEN", TOKEN)
    cfg = load_config(str(EXAMPLE), env={"BILLING_URL": billing_url})
    return cfg.model_copy(
        update={"gateway": GatewaySpec(auth=GatewayAuth(bearer="env:OTEL_GW_TOKEN"))}
    )


@pytest.fixture
def billing_url(env: dict[str, str]) -> str:
    return env["BILLING_URL"]


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    async with OtlpReceiver() as r:
        yield r


@pytest.fixture
async def otel(receiver: OtlpReceiver) -> AsyncIterator[OtlpObserver]:
    observer = otlp_observer(receiver.url)
    yield observer
    await asyncio.to_thread(observer.shutdown)


async def _post(url: str, body: Any, **headers: str) -> tuple[int, bytes]:
    hdrs = {
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        **headers,
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=json.dumps(body), headers=hdrs) as answer,
    ):
        return answer.status, await answer.read()


@pytest.mark.parametrize("surface", ["tools", "vapi", "retell", "elevenlabs", "mcp"])
async def test_the_callers_traceparent_is_the_parent_of_execute_tool(
    surface: str, config: Config, otel: OtlpObserver, receiver: OtlpReceiver
) -> None:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    path, body = _bodies(f"gw-{surface}")[surface]
    async with ToolRuntime(config, sinks=[], otel=otel) as rt:
        http = mcp_asgi(rt, stateless=True, json_response=True)
        app = create_app(rt, config, extra_mounts=[http.route()], extra_lifespan=http.lifespan)
        async with serving(app) as url:
            status, answer = await _post(
                url + path, body, traceparent=f"00-{trace_id}-{parent_id}-01"
            )
            assert status == 200, answer
            assert b"Jamie Patel" in answer
        await otel.flush()

    [tool] = receiver.named("execute_tool get_customer")
    assert tool.trace_id.hex() == trace_id
    assert tool.parent_span_id.hex() == parent_id
    [attempt] = receiver.children(tool)
    assert attempt.trace_id.hex() == trace_id  # the upstream request continues the trace
    if surface == "vapi":
        assert attrs(tool)["gen_ai.tool.call.id"] == "call_vapi_7"
    assert TOKEN.encode() not in receiver.everything()


@pytest.mark.parametrize(
    "traceparent",
    [
        None,
        "not-a-traceparent",
        "00-00000000000000000000000000000000-0000000000000000-01",  # all-zero ids: invalid
    ],
)
async def test_without_a_valid_traceparent_a_tool_call_starts_its_own_trace(
    traceparent: str | None, config: Config, otel: OtlpObserver, receiver: OtlpReceiver
) -> None:
    path, body = _bodies("gw-own")["tools"]
    headers = {} if traceparent is None else {"traceparent": traceparent}
    async with ToolRuntime(config, sinks=[], otel=otel) as rt:
        async with serving(create_app(rt, config)) as url:
            for _ in range(2):
                status, answer = await _post(url + path, body, **headers)
                assert status == 200, answer
        await otel.flush()
    first, second = receiver.named("execute_tool get_customer")
    assert first.parent_span_id == b"" and second.parent_span_id == b""
    assert first.trace_id != second.trace_id  # no context leaked from one request to the next
    assert any(b != 0 for b in first.trace_id)
