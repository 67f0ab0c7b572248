"""Request building is pure: arguments can never steer a request off its integration."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from patchbay import CallContext, InvalidArguments
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
        "../admin",
        "..",
        ".",
        "a/b",
        "x?admin=1",
        "x#frag",
        "https://attacker.example/x",
        "//attacker.example/x",
        "a\r\nHost: evil",
        "%2e%2e",
        "\x00\x01",
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
