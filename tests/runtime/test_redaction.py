"""Secrets never reach the LLM, even echoed by the upstream; caller PII never reaches logs."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from urllib.parse import quote

import pytest

from patchbay import CallContext, ToolRuntime
from patchbay.http import Request, Response
from patchbay.spec import load_config_text

KEY = "k3y/with+odd=chars&more"
PASSWORD = "hunter2-basic-pw"
CONFIG = """
version: 1
integrations:
  keyed:
    base_url: http://keyed.invalid
    auth: {type: api_key, header: X-API-Key, secret: env:ECHO_KEY}
  basic:
    base_url: http://basic.invalid
    auth: {type: basic, username: shop, secret: env:ECHO_PASSWORD}
tools:
  echo:
    integration: keyed
    description: Echo what the API saw.
    request: {method: GET, path: /echo}
  echo_basic:
    integration: basic
    description: Echo what the API saw.
    request: {method: GET, path: /echo}
  explode:
    integration: keyed
    description: A handler with a bug.
    parameters:
      phone: {type: string, format: e164}
    handler: boom_tools:explode
"""


class EchoTransport:
    """An upstream that echoes the credentials it got, in every form, in a 2xx body."""

    async def send(self, request: Request, timeout_s: float) -> Response:
        headers = dict(request.headers)
        seen = headers.get("X-API-Key") or headers.get("Authorization", "")
        secret = KEY if "X-API-Key" in headers else PASSWORD
        body = {
            "name": "Jamie Patel",
            "echo": seen,
            "raw": f"key={secret}",
            "url": f"https://x.test/?k={quote(secret, safe='')}",
            "b64": base64.b64encode(secret.encode()).decode(),
            "nested": [{"note": f"you sent {secret}"}],
            secret: "as a key",
        }
        return Response(200, {"content-type": "application/json"}, json.dumps(body).encode())

    async def close(self) -> None:
        return None


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ToolRuntime:
    monkeypatch.setenv("ECHO_KEY", KEY)
    monkeypatch.setenv("ECHO_PASSWORD", PASSWORD)
    (tmp_path / "boom_tools.py").write_text(
        "async def explode(ctx, phone):\n"
        "    raise RuntimeError(f'no account for {phone} (jamie.patel@example.com)')\n"
    )
    config = load_config_text(CONFIG, base_dir=tmp_path)
    return ToolRuntime(config, transport=EchoTransport(), sinks=[])


@pytest.mark.parametrize("tool", ["echo", "echo_basic"])
async def test_an_echoed_secret_is_redacted_in_every_form(runtime: ToolRuntime, tool: str) -> None:
    async with runtime as rt:
        result = await rt.call_tool(tool, {}, "c-echo")
    assert result.ok, result.to_dict()
    secret = KEY if tool == "echo" else PASSWORD
    forms = [
        secret,
        quote(secret, safe=""),
        base64.b64encode(secret.encode()).decode().rstrip("="),
        base64.b64encode(f"shop:{secret}".encode()).decode().rstrip("="),
    ]
    for text in (result.to_json(), result.llm_text()):
        assert not [form for form in forms if form in text], text
    assert result.result["name"] == "Jamie Patel"
    assert result.result["nested"] == [{"note": "you sent [redacted]"}]
    assert result.result["raw"] == "key=[redacted]"


async def test_an_exception_with_caller_pii_is_logged_redacted(
    runtime: ToolRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="patchbay.runtime")
    async with runtime as rt:
        call = CallContext(id="c-bug", caller="+15551234567")
        result = await rt.call_tool("explode", {"phone": "+15551234567"}, call)
    assert result.error is not None and result.error.code == "internal"
    assert "5551234567" not in result.to_json()
    logged = caplog.text  # as a log handler writes it, traceback included
    assert "5551234567" not in logged and "jamie.patel@example.com" not in logged
    assert "tool explode failed unexpectedly" in logged
    assert "RuntimeError: no account for [redacted]" in logged, "kept for the operator"
