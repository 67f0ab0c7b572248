"""Request and response logs: off by default, keys and types with `shape`, masked values with
`redacted`; never a secret, the caller's phone or email, or a field the tool strips."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from patchbay import CallContext, ToolRuntime
from patchbay.spec import load_config_text
from patchbay.testing import BillingServer

CALLER = "+15551234567"
EMAIL = "jamie.patel@example.com"

CONFIG = """
version: 1
observe:
  log: {bodies: %s}
integrations:
  billing:
    base_url: ${BILLING_URL}
    auth: {type: api_key, header: X-API-Key, secret: env:BILLING_API_KEY}
    retry: {attempts: 1}
tools:
  find_customer:
    integration: billing
    description: Find a customer by phone or email.
    parameters:
      phone: {type: string, format: e164}
      contact: {type: string, format: email}
      note: {type: string}
      internal_code: {type: string, required: false}
    require: {one_of: [phone, contact]}
    request: {method: GET, path: /customers/search, query: {phone: "{args.phone}"}}
    response: {root: data.customer, strip: [internal_flags, internal_code]}
"""


async def _logged(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> tuple[list[dict[str, object]], str, str]:
    async with BillingServer(in_process=True) as billing:
        monkeypatch.setenv("BILLING_API_KEY", billing.api_key)
        config = load_config_text(
            CONFIG % mode, base_dir=tmp_path, env={"BILLING_URL": billing.url}
        )
        caplog.set_level(logging.INFO, logger="patchbay")
        async with ToolRuntime(config, sinks=[]) as rt:
            call = CallContext(id="c-1", caller=CALLER)
            args = {
                "phone": CALLER,
                "contact": EMAIL,
                "note": f"call me on {CALLER} or {EMAIL}",
                "internal_code": "ZX-SECRET-99",
            }
            result = await rt.call_tool("find_customer", args, call)
            refused = await rt.call_tool("find_customer", {"phone": "not a phone"}, call)
    assert result.ok and not refused.ok
    records = [r.getMessage() for r in caplog.records if r.name == "patchbay.bodies"]
    lines = [json.loads(m.removeprefix("bodies ")) for m in records]
    return lines, caplog.text, billing.api_key


async def test_bodies_are_off_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lines, text, key = await _logged("none", tmp_path, monkeypatch, caplog)
    assert lines == []
    assert key not in text and CALLER not in text and EMAIL not in text


async def test_shape_logs_keys_and_types_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lines, text, key = await _logged("shape", tmp_path, monkeypatch, caplog)
    ok, refused = lines
    assert ok["tool"] == "find_customer" and ok["outcome"] == "ok"
    assert ok["arguments"] == {
        "phone": "string",
        "contact": "string",
        "note": "string",
        "internal_code": "string",
    }
    answer = ok["answer"]
    assert (
        isinstance(answer, dict) and answer["name"] == "string" and "internal_flags" not in answer
    )
    assert refused["outcome"] == "invalid_arguments"
    for leaked in (key, CALLER, "555", EMAIL, "Jamie"):
        assert leaked not in text


async def test_redacted_logs_values_with_secrets_contact_and_stripped_fields_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lines, text, key = await _logged("redacted", tmp_path, monkeypatch, caplog)
    ok, refused = lines
    args = ok["arguments"]
    assert isinstance(args, dict)
    assert args["phone"] == "[redacted]" and args["contact"] == "[redacted]"
    assert args["note"] == "call me on [redacted] or [redacted]"
    answer = ok["answer"]
    assert isinstance(answer, dict)
    assert answer["name"] == "Jamie Patel" and answer["id"] == "cus_8F2kLq"
    assert answer["phone"] == "[redacted]" and answer["email"] == "[redacted]"
    assert args["internal_code"] == "[redacted]"  # the tool strips it: never logged
    assert "ZX-SECRET-99" not in text
    assert refused["outcome"] == "invalid_arguments"
    for leaked in (key, CALLER, "5551234567", EMAIL):
        assert leaked not in text


def test_an_unknown_bodies_mode_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="bodies"):
        load_config_text(CONFIG % "everything", base_dir=tmp_path, env={"BILLING_URL": "http://x"})


async def test_log_level_sets_the_patchbay_loggers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="patchbay")  # restored after the test
    text = CONFIG.replace("log: {bodies: %s}", "log: {level: debug}")
    config = load_config_text(text, base_dir=tmp_path, env={"BILLING_URL": "http://127.0.0.1:9"})
    async with ToolRuntime(config, sinks=[]):
        assert logging.getLogger("patchbay").getEffectiveLevel() == logging.DEBUG
