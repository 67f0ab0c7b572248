"""${VAR} and ${VAR:-default} interpolation at load time."""

from __future__ import annotations

import os

import pytest

from patchbay._errors import ConfigErrors
from patchbay.spec import load_config_text

BASE = """
integrations:
  billing:
    base_url: {url}
    headers: {{X-Note: "{note}"}}
"""


def _note(note: str, env: dict[str, str] | None, url: str = "http://api.test") -> str:
    config = load_config_text(BASE.format(url=url, note=note), env=env)
    return config.integrations["billing"].headers["X-Note"]


def test_a_set_variable_is_filled() -> None:
    assert _note("key=${NOTE}", {"NOTE": "abc"}) == "key=abc"


def test_several_variables_in_one_string() -> None:
    assert _note("${A}-${B}", {"A": "1", "B": "2"}) == "1-2"


def test_default_used_when_unset_or_empty() -> None:
    assert _note("${NOTE:-fallback}", {}) == "fallback"
    assert _note("${NOTE:-fallback}", {"NOTE": ""}) == "fallback"
    assert _note("${NOTE:-}", {}) == ""


def test_default_ignored_when_set() -> None:
    assert _note("${NOTE:-fallback}", {"NOTE": "given"}) == "given"


def test_set_but_empty_without_default_is_empty_text() -> None:
    assert _note("[${NOTE}]", {"NOTE": ""}) == "[]"


def test_escape_keeps_a_literal_dollar_brace() -> None:
    assert _note("$${NOTE}", {"NOTE": "abc"}) == "${NOTE}"
    assert _note("$${NOTE} ${NOTE}", {"NOTE": "abc"}) == "${NOTE} abc"


def test_a_lone_dollar_is_left_alone() -> None:
    assert _note("costs $5", {}) == "costs $5"


def test_missing_variable_is_an_error_naming_it_and_where() -> None:
    with pytest.raises(ConfigErrors) as info:
        _note("${NOTE}", {})
    (error,) = info.value.errors
    assert error.location == "integrations.billing.headers.X-Note"
    assert "NOTE" in error.message and "not set" in error.message


def test_every_missing_variable_is_reported() -> None:
    with pytest.raises(ConfigErrors) as info:
        _note("${NOTE}", {}, url="${BILLING_URL}")
    assert [e.location for e in info.value.errors] == [
        "integrations.billing.base_url",
        "integrations.billing.headers.X-Note",
    ]
    assert "BILLING_URL" in info.value.errors[0].message


def test_bad_interpolation_syntax_is_an_error() -> None:
    with pytest.raises(ConfigErrors) as info:
        _note("${1NOTE}", {})
    assert info.value.errors[0].location == "integrations.billing.headers.X-Note"
    assert "bad interpolation" in info.value.errors[0].message


def test_list_items_are_interpolated_with_their_index() -> None:
    text = """
integrations:
  b:
    base_url: http://api.test
tools:
  t:
    integration: b
    description: d
    handler: os:getcwd
    validators: ["${MISSING}"]
"""
    with pytest.raises(ConfigErrors) as info:
        load_config_text(text, env={})
    assert info.value.errors[0].location == "tools.t.validators[0]"


def test_interpolated_text_is_validated_as_its_field_type() -> None:
    text = "integrations:\n  b:\n    base_url: http://x.test\n    timeout_s: ${T:-2.5}\n"
    assert load_config_text(text, env={}).integrations["b"].timeout_s == 2.5


def test_env_defaults_to_the_process_environment() -> None:
    name = next(k for k, v in os.environ.items() if v and k.isidentifier())
    assert _note(f"${{{name}}}", env=None) == os.environ[name]
