"""Faults of the deployment, not of the call: a clear answer and one log line, no traceback."""

from __future__ import annotations

import logging

import pytest

from patchbay import ToolRuntime
from patchbay.spec import load_config_text

_CONFIG = """
version: 1
integrations:
  billing:
    base_url: http://127.0.0.1:9
    auth: {type: api_key, header: X-API-Key, secret: env:PATCHBAY_TEST_NEVER_SET_KEY}
tools:
  get_customer:
    integration: billing
    description: Fetch a customer.
    parameters:
      customer_id: {type: string}
    request: {method: GET, path: "/customers/{customer_id}"}
    say: {failed: "I can't reach billing right now."}
"""


async def test_a_secret_that_does_not_resolve_is_one_clear_line_not_a_traceback(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PATCHBAY_TEST_NEVER_SET_KEY", raising=False)
    caplog.set_level(logging.DEBUG)
    async with ToolRuntime(load_config_text(_CONFIG, env={}), sinks=[]) as rt:
        result = await rt.call_tool("get_customer", {"customer_id": "cus_1"}, "c-1")
    assert not result.ok and result.error is not None
    assert result.error.code == "internal"
    assert "credentials" in result.error.message
    assert "PATCHBAY_TEST_NEVER_SET_KEY" not in result.to_json()  # the LLM hears no config detail
    errors = [r for r in caplog.records if r.name == "patchbay.runtime" and r.levelno >= 40]
    assert errors and all(r.exc_info is None for r in errors)
    assert any("PATCHBAY_TEST_NEVER_SET_KEY" in r.getMessage() for r in errors)


async def test_an_unknown_tool_name_is_cut_in_what_the_llm_reads() -> None:
    async with ToolRuntime(load_config_text(_CONFIG, env={}), sinks=[]) as rt:
        result = await rt.call_tool("x" * 100_000, {}, "c-1")
    assert result.error is not None and result.error.code == "invalid_arguments"
    assert len(result.llm_text()) < 400
