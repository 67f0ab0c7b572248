"""Text no transport can encode (lone surrogates) never reaches one: from the call's own fields,
or from values a Python handler hands its client. Each is a clean error, and nothing is sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from patchbay import CallContext, ToolCall, ToolRuntime
from patchbay.http import Request, Response
from patchbay.spec import load_config_text

CONFIG = """
version: 1
integrations:
  svc:
    base_url: "http://127.0.0.1:9/api"
    retry: {attempts: 1}
    operations:
      - {method: GET, path: "/things/{name}"}
tools:
  create_payment:
    integration: svc
    description: Pay an invoice.
    parameters:
      invoice_id: {type: string}
    request: {method: POST, path: /payments, body: {invoice_id: "{args.invoice_id}"}}
    idempotency: {key: "call_{call.id}_invoice_{args.invoice_id}"}
  by_handler:
    integration: svc
    description: Fetch a thing the handler names.
    parameters:
      how: {type: string}
    handler: unsendable_tools:by_handler
"""

# Written into the test's folder and imported by the config, as a project's handlers are: each
# hands its client a value it computed itself, which patchbay did not validate.
HANDLERS = """
BROKEN = "first edition\\ud800"


async def by_handler(ctx, how):
    if how == "path":
        return await ctx.client.get("/things/{name}", path_params={"name": BROKEN})
    if how == "query":
        return await ctx.client.get("/things/x", params={"q": BROKEN})
    return await ctx.client.get("/things/x", idempotency_key=BROKEN)
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


async def run(
    tmp_path: Path, tool: str, args: dict[str, Any], call: CallContext
) -> tuple[Any, Recording]:
    (tmp_path / "unsendable_tools.py").write_text(HANDLERS)
    upstream = Recording()
    config = load_config_text(CONFIG, base_dir=tmp_path)
    async with ToolRuntime(config, transport=upstream) as runtime:
        result = await runtime.execute(ToolCall(tool, args, call))
    return result, upstream


async def test_a_call_id_with_a_lone_surrogate_is_a_client_error_and_sends_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    call = CallContext("\ud800")
    result, upstream = await run(tmp_path, "create_payment", {"invoice_id": "inv_1"}, call)
    assert result.error is not None
    assert result.error.code == "client_error"
    assert (
        result.error.message
        == "The call's id holds broken characters, so the request was not made."
    )
    assert upstream.sent == []
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("how", ["path", "query", "idempotency_key"])
async def test_a_handler_value_with_a_lone_surrogate_is_refused_before_sending(
    tmp_path: Path, how: str
) -> None:
    result, upstream = await run(tmp_path, "by_handler", {"how": how}, CallContext("c-1"))
    assert result.error is not None
    assert result.error.code == "invalid_arguments"
    assert "broken characters" in result.error.message
    assert upstream.sent == []
