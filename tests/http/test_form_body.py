"""`request.body_encoding: form`: a form-encoded body, as Stripe-style APIs read it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from patchbay import CallContext
from patchbay._errors import ConfigErrors
from patchbay.http._build import build_request
from patchbay.http._types import Transport
from patchbay.spec import load_config_text

CONFIG = """
version: 1
integrations:
  shop:
    base_url: {base_url}
tools:
  create_charge:
    integration: shop
    description: Charge a card.
    parameters:
      amount: {{type: integer}}
      currency: {{type: string}}
      metadata: {{type: object, required: false}}
      expand: {{type: array, items: {{type: string}}, required: false}}
      note: {{type: string, required: false}}
    request:
      method: POST
      path: /v1/charges
      body_encoding: form
      body: {{amount: "{{args.amount}}", currency: "{{args.currency}}",
             metadata: "{{args.metadata}}", expand: "{{args.expand}}",
             description: "{{args.note}}", source: "call {{call.id}}"}}
"""


def test_a_form_body_is_fields_not_json() -> None:
    config = load_config_text(CONFIG.format(base_url="https://shop.example.test"))
    tool = config.tools["create_charge"]
    args = {
        "amount": 500,
        "currency": "usd",
        "metadata": {"order": "o-1", "tags": {"vip": True}},
        "expand": ["customer", "invoice"],
    }
    request = build_request(tool, config.integrations["shop"], args, CallContext(id="c-1"))
    assert request.form == (
        ("amount", "500"),
        ("currency", "usd"),
        ("metadata[order]", "o-1"),
        ("metadata[tags][vip]", "true"),
        ("expand", "customer"),
        ("expand", "invoice"),
        ("source", "call c-1"),  # an argument not given is left out, as in JSON bodies
    )
    assert request.json is None and not request.has_body


def test_form_needs_named_fields() -> None:
    text = CONFIG.format(base_url="https://shop.example.test").replace(
        'body: {amount: "{args.amount}", currency: "{args.currency}",', 'body: ["{args.amount}",'
    )
    text = text.replace(
        """             metadata: "{args.metadata}", expand: "{args.expand}",
             description: "{args.note}", source: "call {call.id}"}""",
        "]",
    )
    with pytest.raises(ConfigErrors, match="body_encoding: form needs a body of named fields"):
        load_config_text(text)


async def test_the_api_receives_a_urlencoded_body(
    serve: Callable[..., Awaitable[str]], transport: Transport
) -> None:
    seen: dict[str, object] = {}

    async def charge(request: web.Request) -> web.Response:
        seen["type"] = request.content_type
        seen["fields"] = sorted((await request.post()).items())
        return web.json_response({"id": "ch_1"})

    app = web.Application()
    app.router.add_post("/v1/charges", charge)
    base = await serve(app)
    config = load_config_text(CONFIG.format(base_url=base))
    request = build_request(
        config.tools["create_charge"],
        config.integrations["shop"],
        {"amount": 500, "currency": "usd", "note": "a & b = c"},
        CallContext(id="c-2"),
    )
    response = await transport.send(request, 5.0)
    assert json.loads(response.body) == {"id": "ch_1"}
    assert seen == {
        "type": "application/x-www-form-urlencoded",
        "fields": [
            ("amount", "500"),
            ("currency", "usd"),
            ("description", "a & b = c"),
            ("source", "call c-2"),
        ],
    }
