"""Request building is pure: arguments can never steer a request off its integration."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from patchbay import CallContext, InvalidArguments, ToolError
from patchbay.http._build import build_request
from patchbay.spec import load_config_text

CONFIG = """
version: 1
integrations:
  billing:
    base_url: https://billing.example.test/api
    version: {header: X-API-Version, value: "2024-06-01"}
  pinned:
    base_url: https://pinned.example.test
    version: {path_prefix: /v2}
tools:
  get_customer:
    integration: billing
    description: Fetch a customer.
    parameters:
      customer_id: {type: string}
    request: {method: GET, path: "/customers/{customer_id}"}
  search:
    integration: billing
    description: Search.
    parameters:
      phone: {type: string, required: false}
      email: {type: string, required: false}
      note: {type: string, required: false}
    request:
      method: GET
      path: /customers/search
      query: {phone: "{args.phone}", email: "{args.email}", tenant: "{call.tenant}"}
      headers: {X-Note: "{args.note}", X-Call: "call-{call.id}"}
  pay:
    integration: billing
    description: Pay.
    parameters:
      invoice_id: {type: string}
      amount: {type: integer}
    request:
      method: POST
      path: /payments
      body: {customer_id: "{call.state.customer_id}", invoice_id: "{args.invoice_id}",
             amount: "{args.amount}", memo: "paid {args.amount} cents", fixed: 7}
    idempotency: {key: "call_{call.id}_invoice_{args.invoice_id}"}
  versioned:
    integration: pinned
    description: Pinned.
    parameters:
      id: {type: string}
    request: {method: GET, path: "/things/{id}"}
"""

CFG = load_config_text(CONFIG)
CALL = CallContext(id="c-1", tenant="acme", caller="+15551234567", state={"customer_id": "cus_1"})


def build(tool: str, args: dict[str, object], call: CallContext = CALL):  # type: ignore[no-untyped-def]
    t = CFG.tools[tool]
    return build_request(t, CFG.integrations[t.integration], args, call)


def test_path_parameter_is_one_encoded_segment() -> None:
    req = build("get_customer", {"customer_id": "cus_1"})
    assert req.url == "https://billing.example.test/api/customers/cus_1"
    assert req.path_template == "/customers/{customer_id}"
    assert req.headers["X-API-Version"] == "2024-06-01"


@pytest.mark.parametrize(
    "evil",
    [
        "a/b",
        "x?admin=1",
        "x#frag",
        "https://attacker.example/x",
        "//attacker.example/x",
        "a\r\nHost: evil",
        "\x00\x01",
        "...",
        "a..b",
        "%2e%2e%2e",
        "1.5",
    ],
)
def test_path_injection_never_leaves_the_segment(evil: str) -> None:
    req = build("get_customer", {"customer_id": evil})
    parts = urlsplit(req.url)
    assert parts.netloc == "billing.example.test"
    assert parts.query == "" and parts.fragment == ""
    assert parts.path.startswith("/api/customers/")
    segment = parts.path[len("/api/customers/") :]
    assert "/" not in segment and segment not in (".", "..")
    assert not any(ord(ch) < 32 for ch in req.url)


DOT_SEGMENTS = [".", "..", "%2e", "%2E%2e", ".%2E", "%2e.", "%252e%252E", "%25252e"]
DOT_SEGMENTS += ["../admin", "a/../b", "..%2Fadmin", "..\\admin", "．．", "%EF%BC%8E%EF%BC%8E"]


@pytest.mark.parametrize("dots", DOT_SEGMENTS)
def test_a_path_parameter_that_is_or_holds_a_dot_segment_is_refused(dots: str) -> None:
    with pytest.raises(InvalidArguments) as err:
        build("get_customer", {"customer_id": dots})
    assert list(err.value.fields) == ["customer_id"]


@pytest.mark.parametrize("dots", [".", "..", "%2e%2e"])
def test_a_dot_segment_in_a_prefixed_path_is_refused(dots: str) -> None:
    with pytest.raises(InvalidArguments) as err:
        build("versioned", {"id": dots})
    assert "id" in err.value.fields


def test_empty_path_parameter_is_rejected() -> None:
    with pytest.raises(InvalidArguments) as err:
        build("get_customer", {"customer_id": ""})
    assert "customer_id" in err.value.fields


def test_query_and_headers_omit_absent_optionals() -> None:
    req = build("search", {"phone": "+15551234567"})
    assert dict(req.query) == {"phone": "+15551234567", "tenant": "acme"}
    assert "X-Note" not in req.headers
    assert req.headers["X-Call"] == "call-c-1"


def test_header_injection_is_refused() -> None:
    with pytest.raises(InvalidArguments) as err:
        build("search", {"phone": "1", "note": "hi\r\nAuthorization: x"})
    assert "X-Note" in err.value.fields


@pytest.mark.parametrize(
    "char", ["\x0b", "\x0c", "\x1b", "\x00", "\r", "\n", "\x7f", "\x85", "\x01"]
)
def test_every_control_character_in_a_header_is_refused(char: str) -> None:
    with pytest.raises(InvalidArguments) as err:
        build("search", {"phone": "1", "note": f"hi{char}there"})
    assert "X-Note" in err.value.fields


def test_a_tab_and_unicode_in_a_header_are_kept() -> None:
    req = build("search", {"phone": "1", "note": "a\tb é"})
    assert req.headers["X-Note"] == "a\tb é"


def test_an_idempotency_key_with_a_control_character_is_refused() -> None:
    with pytest.raises(InvalidArguments) as err:
        build("pay", {"invoice_id": "inv\x0b1", "amount": 1})
    assert err.value.fields


def test_body_keeps_types_and_idempotency_key_is_templated() -> None:
    req = build("pay", {"invoice_id": "inv_1", "amount": 24700})
    assert req.json == {
        "customer_id": "cus_1",
        "invoice_id": "inv_1",
        "amount": 24700,
        "memo": "paid 24700 cents",
        "fixed": 7,
    }
    assert req.idempotency_key == "call_c-1_invoice_inv_1"
    assert req.headers["Idempotency-Key"] == "call_c-1_invoice_inv_1"
    assert req.is_write and req.has_body


def test_missing_call_state_is_words_for_the_llm() -> None:
    with pytest.raises(InvalidArguments) as err:
        build("pay", {"invoice_id": "inv_1", "amount": 1}, CallContext(id="c-2"))
    assert "customer_id" in err.value.fields


def test_version_pin_by_path_prefix() -> None:
    req = build("versioned", {"id": "7"})
    assert req.url == "https://pinned.example.test/v2/things/7"


# Callers that build without validating first (validation refuses such text before this).
@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        ("get_customer", {"customer_id": "\ud800"}, "customer_id"),  # path
        ("search", {"phone": "1", "note": "first edition\ud800"}, "note"),  # header
        ("search", {"phone": "+1555\udfff"}, "phone"),  # query
        ("pay", {"invoice_id": "inv_\ud800", "amount": 1}, "invoice_id"),  # key and body
    ],
    ids=["path", "header", "query", "idempotency_key"],
)
def test_an_argument_with_a_lone_surrogate_is_refused_naming_it(
    tool: str, args: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidArguments) as err:
        build(tool, args)
    assert "broken characters" in err.value.fields[field]


@pytest.mark.parametrize(
    ("tool", "call", "part"),
    [
        ("pay", CallContext(id="\ud800", state={"customer_id": "cus_1"}), "id"),
        ("search", CallContext(id="c-1\udc00"), "id"),
        ("search", CallContext(id="c-1", tenant="acme\ud800"), "tenant"),
        ("pay", CallContext(id="c-1", state={"customer_id": "cus_\ud800"}), "state.customer_id"),
        ("pay", CallContext(id="c-1", state={"customer_id": float("nan")}), "state.customer_id"),
        ("pay", CallContext(id="c-1", state={"customer_id": {"n": 10**5000}}), "state.customer_id"),
    ],
    ids=["id_in_key", "id_in_header", "tenant_in_query", "state_text", "state_nan", "state_huge"],
)
def test_a_call_field_no_request_can_carry_is_a_clean_client_error(
    tool: str, call: CallContext, part: str
) -> None:
    args: dict[str, object] = (
        {"invoice_id": "inv_1", "amount": 1} if tool == "pay" else {"phone": "1"}
    )
    with pytest.raises(ToolError) as err:
        build(tool, args, call)
    assert not isinstance(err.value, InvalidArguments)  # not the LLM's to fix
    assert err.value.code == "client_error" and not err.value.retryable
    assert err.value.message.startswith(f"The call's {part} ")


def test_call_fields_in_other_scripts_are_kept() -> None:
    call = CallContext(id="appel-é", tenant="acme", state={"customer_id": "cus_ü"})
    req = build("pay", {"invoice_id": "inv_1", "amount": 1}, call)
    assert req.headers["Idempotency-Key"] == "call_appel-é_invoice_inv_1"
    assert req.json["customer_id"] == "cus_ü"
