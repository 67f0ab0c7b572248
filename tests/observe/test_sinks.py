"""Events leave the process redacted: no secrets, auth tokens, caller phones or emails."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from patchbay import CallContext, ToolRuntime
from patchbay.observe import AuditSink, Event, JsonLinesSink, LoggingSink, Redactor
from patchbay.spec import load_config_text

SECRET = "s3cr3t-token-value"


def test_redactor_scrubs_secrets_tokens_phones_and_emails() -> None:
    r = Redactor(lambda: {SECRET})
    text = f"key {SECRET} Bearer abc.def.ghi from +1 (555) 123-4567 or jamie@example.com"
    out = r.text(text)
    for leaked in (SECRET, "abc.def.ghi", "555", "jamie@example.com"):
        assert leaked not in out
    data = r.data({"authorization": "x", "nested": {"phone": "+15551234567", "n": 3}})
    assert data == {"authorization": "[redacted]", "nested": {"phone": "[redacted]", "n": 3}}


def test_json_lines_sink_redacts_extra() -> None:
    stream = io.StringIO()
    sink = JsonLinesSink(stream, Redactor(lambda: {SECRET}))
    sink.emit(Event(kind="attempt", tool="t", call_id="c-1", status=200, extra={"why": SECRET}))
    line = json.loads(stream.getvalue())
    assert line["tool"] == "t" and line["status"] == 200
    assert SECRET not in stream.getvalue()


def test_audit_sink_keeps_one_line_per_tool_call(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "calls.jsonl"
    sink = AuditSink(path)
    sink.emit(Event(kind="attempt", tool="t", call_id="c-1", status=200))
    sink.emit(Event(kind="tool_call", tool="t", call_id="c-1", outcome="ok", latency_ms=1.5))
    sink.emit(Event(kind="tool_call", tool="t", call_id="c-2", outcome="timeout"))
    sink.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [(x["call_id"], x["outcome"]) for x in lines] == [("c-1", "ok"), ("c-2", "timeout")]
    assert all("at" in x for x in lines)


async def test_runtime_events_never_carry_the_api_key_or_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PB_TEST_KEY", SECRET)
    config = load_config_text(
        """
version: 1
integrations:
  api:
    base_url: http://127.0.0.1:9
    auth: {type: api_key, secret: env:PB_TEST_KEY}
    retry: {attempts: 1}
tools:
  find:
    integration: api
    description: Find by phone.
    parameters:
      phone: {type: string, format: e164}
    request: {method: GET, path: /find, query: {phone: "{args.phone}"}}
    budget_s: 1
""",
        base_dir=tmp_path,
    )
    stream = io.StringIO()
    caplog.set_level(logging.INFO, logger="patchbay")
    async with ToolRuntime(config, sinks=[JsonLinesSink(stream), LoggingSink()]) as rt:
        call = CallContext(id="c-9", caller="+15551234567")
        result = await rt.call_tool("find", {"phone": "555-123-4567"}, call)
    assert result.error is not None and result.error.code == "upstream_unavailable"
    written = stream.getvalue() + caplog.text + result.to_json()
    assert "attempt" in stream.getvalue() and "tool_call" in stream.getvalue()
    assert SECRET not in written
    assert "5551234567" not in written
