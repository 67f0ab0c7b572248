"""`patchbay export`: each platform's tool configuration, pointing at the gateway, no secrets."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from typer.testing import CliRunner

import patchbay.cli._export  # noqa: F401 - registers `export` on the app
from patchbay.cli._app import app
from patchbay.gateway import Platform, export_platform
from patchbay.gateway._elevenlabs import CALL_ID_VARIABLE, CALLER_VARIABLE
from patchbay.spec import Tool, load_config, parameters_schema, tool_description

from .gateway_support import EXAMPLE, fixture

BASE = "https://gw.example.com/"


@pytest.fixture
def tools() -> Mapping[str, Tool]:
    """The billing example's tools."""
    return load_config(str(EXAMPLE), env={"BILLING_URL": "http://billing"}).tools


def test_vapi_function_tools_call_the_gateway(tools: Mapping[str, Tool]) -> None:
    out = export_platform(tools.values(), Platform.VAPI, BASE)
    assert [t["function"]["name"] for t in out] == list(tools)
    lookup = out[1]
    tool = tools["lookup_customer_invoices"]
    assert lookup["type"] == "function" and lookup["async"] is False
    assert lookup["function"]["parameters"] == parameters_schema(tool)
    assert lookup["function"]["description"] == tool_description(tool)
    assert lookup["server"] == {"url": "https://gw.example.com/vapi", "timeoutSeconds": 5}
    assert {"type": "request-failed", "content": "I can't reach billing right now."} in lookup[
        "messages"
    ]
    delayed = [m for m in lookup["messages"] if m["type"] == "request-response-delayed"]
    assert delayed[0]["content"] == "Still looking, one moment..."
    assert "messages" not in out[0]  # get_customer has no words of its own


def test_retell_custom_functions_post_to_the_gateway(tools: Mapping[str, Tool]) -> None:
    out = export_platform(tools.values(), Platform.RETELL, BASE)
    pay = out[2]
    schema = parameters_schema(tools["create_payment"])
    assert pay["type"] == "custom" and pay["name"] == "create_payment"
    assert pay["url"] == "https://gw.example.com/retell/create_payment"
    assert pay["method"] == "POST" and pay["args_at_root"] is False
    assert pay["parameters"] == {
        "type": "object",
        "properties": schema["properties"],
        "required": schema["required"],
    }
    assert pay["timeout_ms"] == 7000 and pay["speak_after_execution"] is True


def test_elevenlabs_webhook_tools_bind_the_call_to_dynamic_variables(
    tools: Mapping[str, Tool],
) -> None:
    out = export_platform(tools.values(), Platform.ELEVENLABS, BASE)
    documented = fixture("elevenlabs_tool_config.json")["tool_config"]
    pay = out[2]["tool_config"]
    assert set(pay) <= set(documented) | {"response_timeout_secs"}
    assert set(pay["api_schema"]) == set(documented["api_schema"])
    body = pay["api_schema"]["request_body_schema"]
    assert set(body) == set(documented["api_schema"]["request_body_schema"])
    assert pay["api_schema"]["url"] == "https://gw.example.com/elevenlabs/create_payment"
    for variable in (CALL_ID_VARIABLE, CALLER_VARIABLE):
        assert (
            body["properties"][variable]
            == documented["api_schema"]["request_body_schema"]["properties"][variable]
        )
    amount = body["properties"]["amount"]
    assert amount["type"] == "integer"
    assert "minimum 1" in amount["description"] and "maximum 1000000" in amount["description"]
    assert body["required"] == ["invoice_id", "amount", "payment_method_id"]
    for name, prop in body["properties"].items():
        allowed = {"type", "description", "enum", "dynamic_variable", "items", "properties"}
        assert set(prop) <= allowed | {"required"}, name
        if "dynamic_variable" not in prop:
            assert prop["description"], name  # ElevenLabs wants words for every LLM property


def test_the_cli_prints_json_and_no_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "patchbay.yaml"
    config.write_text(
        EXAMPLE.read_text()
        + "gateway:\n  public_url: https://gw.example.com\n"
        + "  auth: {bearer: env:GW_TOKEN, vapi_secret: env:GW_VAPI}\n"
    )
    (tmp_path / "billing_tools.py").write_text((EXAMPLE.parent / "billing_tools.py").read_text())
    monkeypatch.setenv("GW_TOKEN", "never-print-me")
    monkeypatch.setenv("GW_VAPI", "nor-me")
    runner = CliRunner()
    result = runner.invoke(app, ["export", "vapi", "-c", str(config)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out[0]["server"]["url"] == "https://gw.example.com/vapi"
    assert "never-print-me" not in result.output and "nor-me" not in result.output
    other = runner.invoke(app, ["export", "retell", "-c", str(config), "--url", "http://h:1"])
    assert json.loads(other.stdout)[0]["url"] == "http://h:1/retell/get_customer"


def test_the_cli_needs_a_url(tmp_path: Path) -> None:
    config = tmp_path / "patchbay.yaml"
    config.write_text(EXAMPLE.read_text())
    (tmp_path / "billing_tools.py").write_text((EXAMPLE.parent / "billing_tools.py").read_text())
    result = CliRunner().invoke(app, ["export", "elevenlabs", "-c", str(config)])
    assert result.exit_code == 2
    assert "--url" in result.output
