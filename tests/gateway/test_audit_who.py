"""The audit line of a tool call that came through the gateway says who let it in: the
platform route, the credential's name in the config and the tenant; never a credential value."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from patchbay.gateway import create_app
from patchbay.observe._chain import verify
from patchbay.runtime import ToolRuntime
from patchbay.spec import load_config_text

from .gateway_support import CALLER, HERE, running
from .surfaces import vapi_message

OPS = "ops-token-1b2c3d"
ACME = "acme-token-4e5f6a"
VAPI = "vapi-secret-7b8c9d"

CONFIG = """
version: 1
observe:
  audit: {path: %s}
gateway:
  auth:
    bearer: env:PB_OPS
    vapi_secret: env:PB_VAPI
    tenants:
      acme: {bearer: env:PB_ACME}
integrations:
  local: {base_url: "http://127.0.0.1:9", tenants: {acme: {}}}
tools:
  echo:
    integration: local
    description: Repeat the text.
    parameters:
      text: {type: string}
    handler: gateway_tools:echo
    audit: [text]
"""


async def test_each_line_names_platform_credential_and_tenant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in (("PB_OPS", OPS), ("PB_ACME", ACME), ("PB_VAPI", VAPI)):
        monkeypatch.setenv(name, value)
    path = tmp_path / "audit.jsonl"
    cfg = load_config_text(CONFIG % json.dumps(str(path)), base_dir=HERE)
    body = {"arguments": {"text": "hi"}, "call": {"id": "c-1", "caller": CALLER}}
    vapi = vapi_message(
        "vapi_api_reference_tool_calls.json", [("t1", "echo", {"text": "yo"})], "v-1"
    )
    async with (
        ToolRuntime(cfg, sinks=[]) as rt,
        running(create_app(rt, cfg)) as url,
        aiohttp.ClientSession() as http,
    ):
        for token in (OPS, ACME):
            headers = {"Authorization": f"Bearer {token}"}
            async with http.post(f"{url}/tools/echo", json=body, headers=headers) as answer:
                assert answer.status == 200, await answer.text()
        async with http.post(f"{url}/vapi", json=vapi, headers={"X-Vapi-Secret": VAPI}) as a:
            assert a.status == 200, await a.text()
    text = path.read_text()
    lines = [json.loads(x) for x in text.splitlines()]
    who = [(x["platform"], x["credential"], x.get("tenant"), x["fields"]["text"]) for x in lines]
    assert who == [
        ("api", "gateway.auth", None, "hi"),
        ("api", "gateway.auth.tenants.acme", "acme", "hi"),
        ("vapi", "gateway.auth", None, "yo"),
    ]
    for leaked in (OPS, ACME, VAPI, CALLER, "5551234567"):
        assert leaked not in text
    assert verify([path], None) == (3, None)
