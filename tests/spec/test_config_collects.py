"""A config is refused for what YAML would hide (a key given twice), every mistake of a tool
is reported together, and every secret reference is checked before anything serves."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchbay._errors import ConfigErrors, SecretError
from patchbay.http import SecretResolver, check_secrets
from patchbay.spec import load_config_text

HEAD = """\
version: 1
integrations:
  api: {base_url: "http://127.0.0.1:9"}
tools:
"""

TOOL = """\
  get_customer:
    integration: api
    description: Fetch a customer.
    request: {method: GET, path: /customers}
"""


def errors_of(text: str, base_dir: str | Path = ".") -> list[tuple[str, str]]:
    with pytest.raises(ConfigErrors) as info:
        load_config_text(text, base_dir=base_dir, env={})
    return [(e.location, e.message) for e in info.value.errors]


# --- keys given twice -------------------------------------------------------------------------


def test_two_tools_with_one_name_are_refused_with_both_lines() -> None:
    other = TOOL.replace("Fetch a customer.", "Something else.")
    assert errors_of(HEAD + TOOL + other) == [
        ("tools.get_customer", "given twice (lines 5 and 9); each key may appear once")
    ]


def test_a_repeated_key_is_found_at_any_depth_and_every_one_is_named() -> None:
    text = (
        "version: 1\n"
        "integrations:\n"
        "  api:\n"
        "    base_url: http://127.0.0.1:9\n"
        "    timeout_s: 5\n"
        "    timeout_s: 50\n"
        "tools:\n"
        "  t:\n"
        "    integration: api\n"
        "    description: d\n"
        "    parameters: {a: {type: string}, a: {type: integer}}\n"
        "    request: {path: /x}\n"
        "version: 1\n"
    )
    assert errors_of(text) == [
        ("integrations.api.timeout_s", "given twice (lines 5 and 6); each key may appear once"),
        ("tools.t.parameters.a", "given twice on line 11; each key may appear once"),
        ("version", "given twice (lines 1 and 13); each key may appear once"),
    ]


def test_a_repeated_key_does_not_hide_other_mistakes() -> None:
    text = HEAD + TOOL + TOOL.replace("integration: api", "integration: nowhere")
    found = errors_of(text)
    assert ("tools.get_customer", "given twice (lines 5 and 9); each key may appear once") in found
    assert any(loc == "tools.get_customer.integration" for loc, _ in found)


def test_merge_keys_and_aliases_are_not_repeats() -> None:
    text = (
        "version: 1\n"
        "integrations:\n"
        "  api: &api {base_url: http://127.0.0.1:9, timeout_s: 5}\n"
        "  other:\n"
        "    <<: *api\n"
        "    timeout_s: 2\n"
        "tools: {}\n"
    )
    config = load_config_text(text, env={})
    assert config.integrations["other"].timeout_s == 2
    assert config.integrations["api"].timeout_s == 5


# --- a tool's shape is reported with its other mistakes ---------------------------------------


def test_request_and_handler_together_are_reported_with_every_other_mistake() -> None:
    text = HEAD + (
        "  t:\n"
        "    integration: nowhere\n"
        "    description: d\n"
        "    parameters: {code: {type: string, pattern: '('}}\n"
        "    handler: no_such_module:fn\n"
        '    request: {method: GET, path: "/x/{nope}"}\n'
    )
    found = errors_of(text)
    locations = [loc for loc, _ in found]
    assert ("tools.t", "give exactly one of request or handler") in found
    assert "tools.t.integration" in locations
    assert "tools.t.parameters.code.pattern" in locations
    assert "tools.t.request.path" in locations
    assert "tools.t.handler" in locations


def test_neither_request_nor_handler_nor_integration_still_checks_the_rest() -> None:
    text = HEAD + (
        "  t:\n"
        "    description: d\n"
        "    parameters: {a: {type: string, minimum: 5, maximum: 1}}\n"
        "    rules: [{check: 'args.a ==', message: m}]\n"
    )
    found = errors_of(text)
    assert found[:2] == [
        ("tools.t", "give exactly one of request or handler"),
        ("tools.t", "missing required key 'integration'"),
    ]
    assert [loc for loc, _ in found[2:]] == [
        "tools.t.parameters.a.minimum",
        "tools.t.rules[0].check",
    ]


def test_a_broken_shape_is_still_refused_when_it_is_the_only_mistake() -> None:
    assert errors_of(HEAD + TOOL.replace("    request:", "    handler: m:f\n    request:")) == [
        ("tools.get_customer", "give exactly one of request or handler"),
        ("tools.get_customer.handler", "cannot import 'm': No module named 'm'"),
    ]


# --- every secret reference, resolved before serving ------------------------------------------

SECRETS = """\
version: 1
integrations:
  billing:
    base_url: http://127.0.0.1:9
    auth: {type: api_key, secret: env:PB_TEST_BILLING_KEY}
    tenants:
      acme: {auth: {type: mtls, cert: file:acme.pem, key: file:acme.key, ca: "vault:pki#ca"}}
gateway:
  auth:
    bearer: env:PB_TEST_OPS_TOKEN
    tenants:
      acme: {vapi_secret: file:acme-vapi.txt}
tools: {}
"""


async def test_every_reference_that_cannot_be_resolved_is_named_by_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PB_TEST_BILLING_KEY", raising=False)
    monkeypatch.setenv("PB_TEST_OPS_TOKEN", "ops-token-value-5521")
    (tmp_path / "acme.pem").write_text("cert-value-8812\n")
    config = load_config_text(SECRETS, base_dir=tmp_path, env={})
    found = [(e.location, e.message) for e in await check_secrets(config)]
    assert found == [
        (
            "integrations.billing.auth.secret",
            "secret env:PB_TEST_BILLING_KEY is not set in the environment",
        ),
        (
            "integrations.billing.tenants.acme.auth.key",
            "secret file:acme.key cannot be read (No such file or directory)",
        ),
        (
            "integrations.billing.tenants.acme.auth.ca",
            "unknown secret scheme 'vault' (known: env, file)",
        ),
        (
            "gateway.auth.tenants.acme.vapi_secret",
            "secret file:acme-vapi.txt cannot be read (No such file or directory)",
        ),
    ]
    assert "value" not in repr(found)


async def test_a_provider_registered_on_the_resolver_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Vault:
        async def resolve(self, name: str) -> str:
            if name != "pki#ca":
                raise SecretError(f"secret vault:{name} is not in the vault")
            return "ca-pem"

    for name in ("PB_TEST_BILLING_KEY", "PB_TEST_OPS_TOKEN"):
        monkeypatch.setenv(name, "set")
    for name in ("acme.pem", "acme.key", "acme-vapi.txt"):
        (tmp_path / name).write_text("x")
    config = load_config_text(SECRETS, base_dir=tmp_path, env={})
    resolver = SecretResolver(base_dir=tmp_path)
    resolver.register("vault", Vault())
    assert await check_secrets(config, resolver) == []
    assert [e.location for e in await check_secrets(config)] == [
        "integrations.billing.tenants.acme.auth.ca"
    ]


# --- YAML that would never finish loading -----------------------------------------------------


def test_an_alias_inside_what_it_names_is_refused_with_its_location() -> None:
    text = "version: 1\ntools:\n  t: &t {description: d, rules: [*t]}\n"
    assert errors_of(text) == [
        (
            "tools.t.rules[0]",
            "an alias here names a mapping or list it is inside of; the data would be endless",
        )
    ]


def test_a_config_nested_beyond_reason_is_one_error() -> None:
    text = "version: 1\nintegrations: " + "[" * 5000 + "]" * 5000 + "\n"
    assert errors_of(text) == [("", "the config nests too deeply to read")]
