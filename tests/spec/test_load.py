"""A good config loads into frozen objects; handlers import relative to the config's folder."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from patchbay._errors import ConfigError
from patchbay.spec import (
    ApiKeyAuth,
    CallContext,
    Config,
    load_config,
    load_config_text,
    resolve_handler,
)


def test_the_design_example_loads(example: Path, env: dict[str, str]) -> None:
    config = load_config(example, env=env)
    assert isinstance(config, Config)
    billing = config.integrations["billing"]
    assert billing.name == "billing"
    assert billing.base_url == "http://127.0.0.1:8081"
    assert isinstance(billing.auth, ApiKeyAuth)
    assert billing.auth.secret == "env:BILLING_API_KEY"
    assert billing.tenants["acme"].base_url == "https://acme.example"
    assert list(config.tools) == ["get_customer", "lookup_customer_invoices", "create_payment"]
    assert {name: tool.name for name, tool in config.tools.items()} == {
        name: name for name in config.tools
    }
    assert config.tools["get_customer"].cache is not None
    assert not config.tools["get_customer"].is_write
    assert config.tools["create_payment"].is_write
    assert config.base_dir == str(example.parent.resolve())


def test_loaded_objects_are_frozen(example: Path, env: dict[str, str]) -> None:
    config = load_config(example, env=env)
    with pytest.raises(ValidationError):
        config.state = "redis://x"
    with pytest.raises(ValidationError):
        config.tools["get_customer"].budget_s = 99
    with pytest.raises(ValidationError):
        config.integrations["billing"].base_url = "http://evil.test"
    assert config.tools["get_customer"].budget_s == 3


def test_yaml_dates_and_yes_no_stay_text() -> None:
    text = """
integrations:
  b:
    base_url: http://x.test
    version: {header: X-API-Version, value: 2024-06-01}
tools:
  t:
    integration: b
    description: d
    parameters:
      answer: {type: string, enum: [yes, no, on, off]}
      flag: {type: boolean, default: true}
    request: {path: /x}
    response: {messages: {404: not found, CS_404: customer not found}}
"""
    config = load_config_text(text, env={})
    version = config.integrations["b"].version
    assert version is not None and version.value == "2024-06-01"
    tool = config.tools["t"]
    assert tool.parameters["answer"].enum == ("yes", "no", "on", "off")
    assert tool.parameters["flag"].default is True
    assert tool.response.messages == {"404": "not found", "CS_404": "customer not found"}


def test_name_must_match_its_key() -> None:
    text = "integrations:\n  b:\n    name: other\n    base_url: http://x.test\n"
    with pytest.raises(ConfigError) as info:
        load_config_text(text, env={})
    assert str(info.value) == "integrations.b: name 'other' differs from its key 'b'"


async def test_handler_resolves_relative_to_the_config_folder(
    example: Path, env: dict[str, str]
) -> None:
    config = load_config(example, env=env)
    tool = config.tools["lookup_customer_invoices"]
    handler = resolve_handler(config, tool)
    call = CallContext(id="c-1")
    assert await handler(call, phone="+15551234567") == {
        "phone": "+15551234567",
        "email": None,
        "call": call,
    }
    assert resolve_handler(config, tool) is handler  # cached
    assert config.base_dir in sys.path  # left there for lazy sibling imports


def test_handler_from_another_working_directory(
    tmp_path: Path, handler_module: Callable[[], str]
) -> None:
    module = handler_module()
    text = f"""
integrations:
  b: {{base_url: "http://x.test"}}
tools:
  t: {{integration: b, description: d, handler: "{module}:lookup_customer_invoices"}}
"""
    config = load_config_text(text, base_dir=tmp_path, env={})
    assert resolve_handler(config, config.tools["t"]).__module__ == module


def test_resolve_handler_of_a_request_tool_is_an_error(example: Path, env: dict[str, str]) -> None:
    config = load_config(example, env=env)
    with pytest.raises(ConfigError) as info:
        resolve_handler(config, config.tools["get_customer"])
    assert info.value.location == "tools.get_customer"
