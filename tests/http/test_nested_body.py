"""Object arguments with declared fields go out as given (after validation), or not at all."""

from __future__ import annotations

from typing import Any

from patchbay import CallContext
from patchbay.http._build import build_request
from patchbay.spec import load_config_text
from patchbay.validate import validate_arguments

CONFIG = """
version: 1
integrations:
  shop: {base_url: "https://shop.example.test"}
tools:
  ship:
    integration: shop
    description: Ship an order.
    parameters:
      order_id: {type: string}
      address:
        type: object
        required: false
        properties:
          city: {type: string}
          phone: {type: string, format: e164, required: false}
      lines:
        type: array
        required: false
        items: {type: object, properties: {sku: {type: string}, qty: {type: integer}}}
    request:
      method: POST
      path: /ship
      body: {order: "{args.order_id}", to: "{args.address}", lines: "{args.lines}"}
  ship_form:
    integration: shop
    description: Ship, form-encoded.
    parameters:
      address: {type: object, properties: {city: {type: string}, zip: {type: string}}}
    request: {method: POST, path: /ship, body_encoding: form, body: {to: "{args.address}"}}
"""
CFG = load_config_text(CONFIG)
CALL = CallContext(id="c-1")


def build(tool: str, args: dict[str, Any]) -> Any:
    t = CFG.tools[tool]
    cleaned = validate_arguments(t, args, CALL)
    return build_request(t, CFG.integrations[t.integration], cleaned, CALL)


def test_a_nested_object_is_sent_as_validated() -> None:
    request = build(
        "ship",
        {
            "order_id": "o1",
            "address": {"city": "Oslo", "phone": "(555) 123-4567"},
            "lines": [{"sku": "a", "qty": 2.0}],
        },
    )
    assert request.json == {
        "order": "o1",
        "to": {"city": "Oslo", "phone": "+15551234567"},
        "lines": [{"sku": "a", "qty": 2}],
    }


def test_an_absent_optional_object_sends_nothing() -> None:
    assert build("ship", {"order_id": "o1"}).json == {"order": "o1"}
    assert build("ship", {"order_id": "o1", "address": None}).json == {"order": "o1"}
    # a null inner field is "not given": it is left out, not sent as null
    sent = build("ship", {"order_id": "o1", "address": {"city": "Oslo", "phone": None}})
    assert sent.json == {"order": "o1", "to": {"city": "Oslo"}}


def test_a_nested_object_in_a_form_body_uses_bracketed_keys() -> None:
    request = build("ship_form", {"address": {"city": "Oslo", "zip": "0150"}})
    assert dict(request.form or ()) == {"to[city]": "Oslo", "to[zip]": "0150"}
