"""Every kind of config mistake, with its exact location and plain-words message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from patchbay._errors import ConfigError, ConfigErrors
from patchbay.spec import load_config, load_config_text

HEAD = """
integrations:
  billing:
    base_url: http://127.0.0.1:8081
    auth: {type: api_key, secret: env:BILLING_API_KEY}
tools:
"""

READ = """
  get_customer:
    integration: billing
    description: Fetch a customer.
    parameters:
      customer_id: {type: string}
    request: {method: GET, path: "/customers/{customer_id}"}
"""


def _errors(text: str, base_dir: str | Path = ".") -> list[tuple[str, str]]:
    with pytest.raises(ConfigErrors) as info:
        load_config_text(text, base_dir=base_dir, env={})
    assert all(isinstance(e, ConfigError) for e in info.value.errors)
    return [(e.location, e.message) for e in info.value.errors]


def _tool(body: str) -> list[tuple[str, str]]:
    return _errors(HEAD + "  t:\n" + "\n".join("    " + line for line in body.splitlines()))


def test_unknown_key_names_it_and_suggests_the_right_one() -> None:
    errors = _errors(HEAD + READ.replace("method: GET", "methd: GET"))
    assert errors == [
        ("tools.get_customer.request.methd", "unknown key 'methd' (did you mean 'method'?)")
    ]


def test_wrong_type_says_what_was_expected() -> None:
    errors = _errors(HEAD.replace("auth:", "timeout_s: abc\n    auth:") + READ)
    assert errors == [("integrations.billing.timeout_s", "expected a number, got 'abc'")]


def test_missing_key_and_literal_choice() -> None:
    errors = _tool("integration: billing\ndescription: d\nrequest: {method: GTE}")
    assert errors == [
        ("tools.t.request.method", "expected GET, POST, PUT, PATCH or DELETE, got 'GTE'"),
        ("tools.t.request.path", "missing required key 'path'"),
    ]


def test_bounds_are_in_words() -> None:
    errors = _tool("integration: billing\ndescription: d\nbudget_s: 0\nrequest: {path: /x}")
    assert errors == [("tools.t.budget_s", "must be greater than 0, got 0")]


def test_model_rule_message_loses_pydantic_prefix() -> None:
    errors = _tool("integration: billing\ndescription: d")
    assert errors == [("tools.t", "give exactly one of request or handler")]


def test_auth_union_noise_is_dropped_from_the_location() -> None:
    errors = _errors(HEAD.replace("secret: env:BILLING_API_KEY", "secret: env:X, hedr: Y") + READ)
    assert errors == [
        ("integrations.billing.auth.hedr", "unknown key 'hedr' (did you mean 'header'?)")
    ]


def test_unknown_auth_type_lists_the_known_ones() -> None:
    errors = _errors(HEAD.replace("type: api_key", "type: apikey") + READ)
    assert errors == [
        (
            "integrations.billing.auth.type",
            "unknown type 'apikey'; expected one of api_key, bearer, basic, oauth2, jwt, mtls",
        )
    ]


def test_list_index_in_location() -> None:
    errors = _errors(HEAD + READ + "    rules: [{check: 'args.x'}]\n")
    assert errors == [("tools.get_customer.rules[0].message", "missing required key 'message'")]


def test_unknown_integration() -> None:
    errors = _errors(HEAD + READ.replace("integration: billing", "integration: biling"))
    assert errors == [
        ("tools.get_customer.integration", "unknown integration 'biling' (integrations: billing)")
    ]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/customers/{id}", "placeholder {id} names no parameter (parameters: customer_id)"),
        (
            "/customers/{args.id}",
            "placeholder {args.id} names no parameter (parameters: customer_id)",
        ),
        ("/c/{ customer_id }", "malformed placeholder { customer_id }"),
        (
            "/c/{call.phone}",
            "unknown placeholder {call.phone}; use call.id, call.tenant, "
            "call.caller or call.state.<name>",
        ),
        ("/c/{user.id}", "unknown placeholder root 'user' in {user.id}; use args or call"),
    ],
)
def test_bad_path_placeholders(path: str, message: str) -> None:
    errors = _errors(HEAD + READ.replace("/customers/{customer_id}", path))
    assert errors == [("tools.get_customer.request.path", message)]


def test_good_placeholders_everywhere_load() -> None:
    text = HEAD + READ.replace(
        'path: "/customers/{customer_id}"',
        'path: "/t/{call.tenant}/c/{args.customer_id}", query: {by: "{call.caller}", '
        'id: "{args.customer_id}"}, headers: {X-Call: "{call.id}-{call.state.a.b}"}',
    )
    config = load_config_text(text, env={})
    assert config.tools["get_customer"].request is not None


def test_placeholders_in_query_body_headers_and_idempotency_key() -> None:
    errors = _tool(
        "integration: billing\ndescription: d\nparameters: {a: {type: string}}\n"
        "request:\n"
        "  method: POST\n  path: /p\n"
        "  query: {q: '{a}'}\n"
        "  headers: {X-Id: '{args.b}'}\n"
        "  body: {items: [{id: '{args.c}'}], who: '{call.user}'}\n"
        "idempotency: {key: 'k_{args.d}'}"
    )
    assert errors == [
        ("tools.t.request.query.q", "unknown placeholder {a}; write {args.a} or {call.id}-style"),
        ("tools.t.request.headers.X-Id", "placeholder {args.b} names no parameter (parameters: a)"),
        (
            "tools.t.request.body.items[0].id",
            "placeholder {args.c} names no parameter (parameters: a)",
        ),
        (
            "tools.t.request.body.who",
            "unknown placeholder {call.user}; use call.id, call.tenant, "
            "call.caller or call.state.<name>",
        ),
        ("tools.t.idempotency.key", "placeholder {args.d} names no parameter (parameters: a)"),
    ]


def test_require_naming_unknown_parameter() -> None:
    errors = _errors(HEAD + READ + "    require: {one_of: [customer_id, phone]}\n")
    assert errors == [("tools.get_customer.require.one_of", "names unknown parameter 'phone'")]


def test_invalid_regex_pattern() -> None:
    errors = _errors(HEAD + READ.replace("{type: string}", "{type: string, pattern: '[a-'}"))
    assert errors == [
        (
            "tools.get_customer.parameters.customer_id.pattern",
            "invalid regular expression: unterminated character set at position 0",
        )
    ]


@pytest.mark.parametrize(
    ("extra", "location"),
    [
        ("    response: {root: 'data.'}\n", "tools.get_customer.response.root"),
        (
            "    response: {fields: {name: 'a[', ok: b}}\n",
            "tools.get_customer.response.fields.name",
        ),
        ("    rules: [{check: 'args.x ==', message: m}]\n", "tools.get_customer.rules[0].check"),
    ],
)
def test_invalid_jmespath(extra: str, location: str) -> None:
    errors = _errors(HEAD + READ + extra)
    assert [loc for loc, _ in errors] == [location]
    assert errors[0][1].startswith("invalid JMESPath expression")


def test_cache_on_a_write_tool() -> None:
    text = HEAD + READ.replace("method: GET", "method: POST") + "    cache: {ttl_s: 5}\n"
    assert _errors(text) == [("tools.get_customer.cache", "a write tool cannot be cached")]


def test_background_mode_on_a_read() -> None:
    errors = _errors(HEAD + READ + "    mode: background\n")
    assert errors == [("tools.get_customer.mode", "only write tools can run in the background")]


def test_unknown_state_scheme() -> None:
    errors = _errors("state: mysql://db/1\n" + HEAD + READ)
    assert errors == [
        (
            "state",
            "unknown state store 'mysql://db/1'; use memory, sqlite:///path, "
            "redis://host:port/db, redis+cluster://host:port or postgresql://user@host:port/db",
        )
    ]


@pytest.mark.parametrize("state", ["memory", "sqlite:///tmp/pb.db", "redis://127.0.0.1:6379/0"])
def test_known_state_schemes(state: str) -> None:
    assert load_config_text(f"state: {state}\n" + HEAD + READ, env={}).state == state


@pytest.mark.parametrize("url", ["ftp://x.test", "/relative", "api.test", "http://"])
def test_bad_base_url(url: str) -> None:
    errors = _errors(HEAD.replace("http://127.0.0.1:8081", url) + READ)
    assert errors == [
        ("integrations.billing.base_url", f"expected an absolute http(s) URL, got {url!r}")
    ]


def test_bad_tenant_base_url() -> None:
    text = HEAD.replace("auth:", "tenants: {acme: {base_url: nope}}\n    auth:") + READ
    assert [loc for loc, _ in _errors(text)] == ["integrations.billing.tenants.acme.base_url"]


def test_handler_that_does_not_import(tmp_path: Path) -> None:
    errors = _errors(
        HEAD + "  t:\n    integration: billing\n    description: d\n"
        "    handler: pb_no_such_module:f\n",
        tmp_path,
    )
    assert errors == [
        (
            "tools.t.handler",
            "cannot import 'pb_no_such_module': No module named 'pb_no_such_module'",
        )
    ]


def test_handler_missing_or_not_async(tmp_path: Path, handler_module: Callable[[], str]) -> None:
    module = handler_module()
    text = (
        HEAD
        + f"  a:\n    integration: billing\n    description: d\n    handler: {module}:nope\n"
        + f"  b:\n    integration: billing\n    description: d\n    handler: {module}:not_async\n"
        + f"  c:\n    integration: billing\n    description: d\n    handler: {module}\n"
    )
    assert _errors(text, tmp_path) == [
        ("tools.a.handler", f"module {module!r} has no 'nope'"),
        (
            "tools.b.handler",
            f"'{module}:not_async' is not an async function (define it with 'async def')",
        ),
        ("tools.c.handler", f"expected 'module:function', got {module!r}"),
    ]


def test_handler_module_that_raises_on_import(
    tmp_path: Path, handler_module: Callable[[str], str]
) -> None:
    module = handler_module("raise RuntimeError('boom')\n")
    text = HEAD + f"  t:\n    integration: billing\n    description: d\n    handler: {module}:f\n"
    assert _errors(text, tmp_path) == [
        ("tools.t.handler", f"importing {module!r} failed: RuntimeError: boom")
    ]


def test_validator_that_does_not_import(tmp_path: Path, handler_module: Callable[[], str]) -> None:
    module = handler_module()
    text = HEAD + READ + f"    validators: ['{module}:check_amount', '{module}:missing']\n"
    assert _errors(text, tmp_path) == [
        ("tools.get_customer.validators[1]", f"module {module!r} has no 'missing'")
    ]


def test_yaml_syntax_error_gives_line_and_column() -> None:
    errors = _errors("integrations:\n  billing: {base_url: http://x\n")
    ((location, message),) = errors
    assert location == "line 3, column 1"
    assert message.startswith("YAML syntax error: ")


def test_empty_and_non_mapping_configs() -> None:
    assert _errors("") == [("", "the config is empty")]
    assert _errors("- a\n- b\n") == [("", "the config must be a mapping of keys to values")]


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigErrors) as info:
        load_config(missing)
    assert info.value.errors[0].location == str(missing)
    assert "cannot read the config file" in info.value.errors[0].message


def test_secret_values_are_not_echoed() -> None:
    text = HEAD.replace("secret: env:BILLING_API_KEY", "secret: [hunter2]") + READ
    ((location, message),) = _errors(text)
    assert location == "integrations.billing.auth.secret"
    assert "hunter2" not in message


def test_many_mistakes_are_reported_at_once(
    tmp_path: Path, handler_module: Callable[[], str]
) -> None:
    module = handler_module()
    text = f"""
version: 2
state: mongodb://x
integrations:
  billing:
    base_url: ftp://billing
    timeout_s: fast
tools:
  get_customer:
    integration: biling
    description: Fetch a customer.
    parameters:
      customer_id: {{type: strng, pattern: "[a-"}}
    require: {{one_of: [phone]}}
    request: {{methd: GET, path: "/customers/{{id}}"}}
    response: {{root: "data."}}
    mode: background
  pay:
    integration: billing
    description: Pay.
    handler: {module}:not_async
    cache: {{ttl_s: 1}}
"""
    locations = [loc for loc, _ in _errors(text, tmp_path)]
    assert locations == [
        "version",
        "state",
        "integrations.billing.timeout_s",
        "integrations.billing.base_url",
        "tools.get_customer.parameters.customer_id.type",
        "tools.get_customer.request.methd",
        "tools.get_customer.integration",
        "tools.get_customer.parameters.customer_id.pattern",
        "tools.get_customer.require.one_of",
        "tools.get_customer.request.path",
        "tools.get_customer.response.root",
        "tools.get_customer.mode",
        "tools.pay.cache",
        "tools.pay.handler",
    ]
