"""`import_openapi`: documents in, a config `patchbay validate` accepts as it is out."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from patchbay.http import check_secrets
from patchbay.importers import Imported, import_openapi, load_document, param_name, tool_name
from patchbay.importers._yaml import dump
from patchbay.spec import Config, SchemaFormat, export_tools, load_config_text

TOOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")  # every LLM format's rule


def doc(text: str) -> dict[str, Any]:
    loaded = yaml.safe_load(textwrap.dedent(text))
    assert isinstance(loaded, dict)
    return loaded


def validated(result: Imported, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Config:
    """What `patchbay validate` does: load the text, then resolve every secret reference."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the env: secret provider reads the process
    config = load_config_text(result.to_yaml(), env=env)
    assert asyncio.run(check_secrets(config)) == []
    for fmt in SchemaFormat:
        export_tools(config.tools.values(), fmt, strict=False)
    return config


def test_billing_document_becomes_a_working_config(
    billing_openapi: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = import_openapi(doc(billing_openapi))
    assert result.integration == "billing"
    assert result.env == ["BILLING_URL", "BILLING_API_KEY"]
    config = validated(result, {"BILLING_API_KEY": "k"}, monkeypatch)
    assert list(config.tools) == [
        "search_customers",
        "get_customer",
        "delete_customer",
        "list_invoices",
        "create_payment",
    ]
    billing = config.integrations["billing"]
    assert billing.base_url == "http://127.0.0.1:8042"  # the server URL is the default
    assert billing.auth is not None and billing.auth.model_dump()["header"] == "X-API-Key"
    get = config.tools["get_customer"]
    assert get.request is not None and get.request.path == "/customers/{id}"
    assert get.parameters["id"].pattern == "^cus_[A-Za-z0-9]+$"  # through the $ref
    assert not get.is_write
    search = config.tools["search_customers"]
    assert not search.is_required("phone") and search.parameters["email"].format == "email"
    pay = config.tools["create_payment"]
    # allOf merged in order, a readOnly field left out, a nested object kept whole
    assert list(pay.parameters) == [
        "customer_id",
        "invoice_id",
        "amount",
        "payment_method_id",
        "metadata",
    ]
    assert pay.parameters["amount"].minimum == 1
    assert pay.parameters["metadata"].type == "object"
    assert not pay.is_required("metadata") and pay.is_required("amount")
    assert pay.is_write and pay.idempotency is not None
    assert pay.idempotency.header == "Idempotency-Key"
    assert "{call.id}" in pay.idempotency.key and "{args.invoice_id}" in pay.idempotency.key
    assert pay.request is not None and pay.request.body["amount"] == "{args.amount}"
    assert config.tools["delete_customer"].is_write


def test_comments_point_where_a_person_decides(billing_openapi: str) -> None:
    text = import_openapi(doc(billing_openapi)).to_yaml()
    before_delete = text.split("  delete_customer:")[0].splitlines()[-3:]
    assert any("DELETE removes data" in line for line in before_delete)
    assert any("description cut from" in line for line in before_delete)
    assert "# idempotency key" in text
    before_get = text.split("  get_customer:")[0].splitlines()[-1]
    assert (
        before_get == "  # the answer wraps its content: consider response: {root: data.customer}"
    )
    assert text.count("consider response:") == 1  # lists and undescribed answers get none
    assert max(len(line) for line in text.splitlines() if line.lstrip().startswith("#")) <= 100
    desc = yaml.safe_load(text)["tools"]["delete_customer"]["description"]
    assert len(desc) <= 300 and desc.startswith("Deletes a customer permanently.")


OPENAPI_31 = """
openapi: 3.1.0
info: {title: "Acme CRM: Contacts", version: "2"}
servers:
  - url: "https://{region}.acme.example/v2"
    variables: {region: {default: eu}}
  - url: https://us.acme.example/v2
components:
  securitySchemes:
    token: {type: http, scheme: bearer}
  schemas:
    Contact:
      type: object
      required: [name]
      properties:
        name: {type: string, maxLength: 80}
        nickname: {type: [string, "null"]}
        age: {anyOf: [{type: integer, minimum: 0}, {type: "null"}]}
        tags: {type: array, items: {type: string}, maxItems: 5}
        shape: {oneOf: [{type: string}, {type: integer}]}
paths:
  /contacts:
    post:
      operationId: contacts.create
      description: Create a contact.
      requestBody:
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Contact"}
  /contacts/{contact-id}:
    get:
      operationId: get contact/by-id
      summary: "Fetch a contact: name, age and tags."
      parameters:
        - {name: contact-id, in: path, required: true, schema: {type: string}}
        - {name: X-Trace, in: header, schema: {type: string}}
        - {name: "filter[kind]", in: query, schema: {type: string}}
    head:
      operationId: contactExists
  /teams/{id}/members:
    get:
      parameters:
        - {name: id, in: path, required: true, schema: {type: string}}
webhooks:
  contactChanged:
    post: {requestBody: {content: {application/json: {schema: {type: object}}}}}
"""


def test_openapi_31_types_names_and_bearer(monkeypatch: pytest.MonkeyPatch) -> None:
    result = import_openapi(doc(OPENAPI_31))
    assert result.integration == "acme_crm_contacts"
    config = validated(result, {"ACME_CRM_CONTACTS_TOKEN": "t"}, monkeypatch)
    assert config.integrations["acme_crm_contacts"].base_url == "https://eu.acme.example/v2"
    assert set(config.tools) == {"contacts_create", "get_contact_by_id", "get_teams_by_id_members"}
    create = config.tools["contacts_create"]
    assert create.parameters["nickname"].type == "string"  # a null-able string is a string
    assert create.parameters["age"].type == "integer" and create.parameters["age"].minimum == 0
    assert create.parameters["tags"].items is not None and create.parameters["tags"].max_items == 5
    assert "shape" not in create.parameters
    get = config.tools["get_contact_by_id"]
    assert get.request is not None
    assert get.request.path == "/contacts/{contact_id}"
    assert get.request.headers == {"X-Trace": "{args.X_Trace}"}
    assert get.request.query == {"filter[kind]": "{args.filter_kind}"}
    skipped = {str(s) for s in result.skipped}
    assert "HEAD /contacts/{contact-id}: patchbay sends GET, POST, PUT, PATCH, DELETE" in skipped
    assert any("'shape'" in s and "oneOf of 2 different shapes" in s for s in skipped)
    assert "other servers: https://us.acme.example/v2" in result.to_yaml()


SWAGGER = """
swagger: "2.0"
info: {title: Legacy Orders, version: "1"}
host: orders.example.com
basePath: /api
schemes: [https]
securityDefinitions:
  basic: {type: basic}
definitions:
  Order:
    type: object
    required: [sku]
    properties:
      sku: {type: string}
      quantity: {type: integer, minimum: 1, default: 1}
parameters:
  OrderId: {name: order_id, in: path, required: true, type: string}
paths:
  /orders:
    post:
      operationId: createOrder
      summary: Place an order.
      consumes: [application/json]
      parameters:
        - {name: order, in: body, required: true, schema: {$ref: "#/definitions/Order"}}
  /orders/{order_id}:
    get:
      operationId: getOrder
      summary: Fetch an order.
      parameters:
        - $ref: "#/parameters/OrderId"
        - {name: expand, in: query, type: array, items: {type: string}}
  /orders/{order_id}/notes:
    post:
      operationId: addNote
      consumes: [application/x-www-form-urlencoded]
      parameters:
        - $ref: "#/parameters/OrderId"
        - {name: text, in: formData, required: true, type: string}
  /orders/{order_id}/files:
    post:
      operationId: attach
      consumes: [multipart/form-data]
      parameters:
        - $ref: "#/parameters/OrderId"
        - {name: file, in: formData, required: true, type: file}
"""


def test_swagger_2(monkeypatch: pytest.MonkeyPatch) -> None:
    result = import_openapi(doc(SWAGGER))
    env = {"LEGACY_ORDERS_USERNAME": "u", "LEGACY_ORDERS_PASSWORD": "p"}
    config = validated(result, env, monkeypatch)
    assert config.integrations["legacy_orders"].base_url == "https://orders.example.com/api"
    assert config.integrations["legacy_orders"].auth is not None
    assert config.integrations["legacy_orders"].auth.type == "basic"
    assert set(config.tools) == {"create_order", "get_order", "add_note"}
    create = config.tools["create_order"]
    assert create.request is not None and create.request.body == {
        "sku": "{args.sku}",
        "quantity": "{args.quantity}",
    }
    assert create.parameters["quantity"].default == 1 and not create.is_required("quantity")
    expand = config.tools["get_order"].parameters["expand"]
    assert expand.type == "array" and expand.items is not None
    note = config.tools["add_note"].request
    assert note is not None and note.body_encoding == "form"
    assert note.body == {"text": "{args.text}"}
    assert [str(s) for s in result.skipped] == [
        "POST /orders/{order_id}/files: required body field 'file': type 'file'"
    ]


def test_form_encoded_bodies(monkeypatch: pytest.MonkeyPatch) -> None:
    result = import_openapi(
        doc(
            """
            openapi: 3.0.0
            info: {title: Payments, version: "2024-06-20"}
            servers: [{url: https://api.payments.example}]
            components:
              securitySchemes: {basicAuth: {type: http, scheme: basic}}
            paths:
              /v1/refunds:
                post:
                  operationId: PostRefunds
                  summary: Refund a charge.
                  requestBody:
                    required: true
                    content:
                      application/x-www-form-urlencoded:
                        schema:
                          type: object
                          required: [charge]
                          properties:
                            charge: {type: string, maxLength: 5000}
                            amount: {type: integer}
                            metadata:
                              type: object
                              additionalProperties: {type: string}
                              description: Set of key-value pairs.
            """
        )
    )
    env = {"PAYMENTS_USERNAME": "sk_test", "PAYMENTS_PASSWORD": "pw"}
    config = validated(result, env, monkeypatch)
    refund = config.tools["post_refunds"]
    assert refund.request is not None and refund.request.body_encoding == "form"
    assert refund.request.body == {
        "charge": "{args.charge}",
        "amount": "{args.amount}",
        "metadata": "{args.metadata}",
    }
    assert refund.parameters["metadata"].type == "object"
    assert result.skipped == []


@pytest.mark.parametrize(
    ("include", "exclude", "tools"),
    [
        (["getCustomer"], [], {"get_customer"}),
        (["customers"], ["admin"], {"search_customers", "get_customer"}),
        (["/customers/*"], ["delete*"], {"search_customers", "get_customer"}),
        (["POST /payments", "list*"], [], {"create_payment", "list_invoices"}),
        ([], ["customers", "invoices"], {"create_payment"}),
    ],
)
def test_include_and_exclude(
    billing_openapi: str, include: list[str], exclude: list[str], tools: set[str]
) -> None:
    result = import_openapi(doc(billing_openapi), include=include, exclude=exclude)
    assert set(result.config["tools"]) == tools
    assert result.skipped == []  # left out on purpose is not a skip


AUTH = """
openapi: 3.0.0
info: {{title: Auth, version: "1"}}
servers: [{{url: https://auth.example.com}}]
security: [{{{first}: []}}]
components:
  securitySchemes:
    cookie: {{type: apiKey, in: cookie, name: sid}}
    query: {{type: apiKey, in: query, name: key}}
    cc:
      type: oauth2
      flows:
        clientCredentials: {{tokenUrl: /oauth/token, scopes: {{read: r, write: w}}}}
    mtls: {{type: mutualTLS}}
paths:
  /ping: {{get: {{operationId: ping, summary: Ping.}}}}
"""


@pytest.mark.parametrize(
    ("first", "expected", "env"),
    [
        ("query", {"type": "api_key", "query": "key"}, ["AUTH_API_KEY"]),
        (
            "cc",
            {"type": "oauth2", "token_url": "https://auth.example.com/oauth/token"},
            ["AUTH_CLIENT_ID", "AUTH_CLIENT_SECRET"],
        ),
        ("mtls", {"type": "mtls"}, ["AUTH_CLIENT_CERT", "AUTH_CLIENT_KEY"]),
        ("cookie", {"type": "api_key", "query": "key"}, ["AUTH_API_KEY"]),  # next usable one
    ],
)
def test_security_schemes_become_secret_references(
    first: str,
    expected: dict[str, str],
    env: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = import_openapi(doc(AUTH.format(first=first)))
    assert result.env == ["AUTH_URL", *env]
    values = dict.fromkeys(env, "x")
    if first == "mtls":  # PEM text, as the env: provider hands it to TLS
        values = {"AUTH_CLIENT_CERT": "-----BEGIN CERTIFICATE-----", "AUTH_CLIENT_KEY": "k"}
    auth = validated(result, values, monkeypatch).integrations["auth"].auth
    assert auth is not None
    dumped = auth.model_dump()
    assert {k: dumped[k] for k in expected} == expected
    if first == "cc":
        assert dumped["scope"] == "read write"
    if first == "cookie":
        assert "cookie: an API key sent in a cookie is not supported" in result.to_yaml()


@given(st.lists(st.text(min_size=0, max_size=90), min_size=1, max_size=6))
def test_tool_names_are_valid_and_unique(raws: list[str]) -> None:
    used: set[str] = set()
    names = [tool_name(raw, used) for raw in raws]
    assert len(set(names)) == len(names)
    assert all(TOOL_NAME.fullmatch(n) for n in names)


@given(st.lists(st.text(min_size=0, max_size=90), min_size=1, max_size=6))
def test_param_names_are_valid_and_unique(raws: list[str]) -> None:
    used: set[str] = set()
    names = [param_name(raw, used, "query") for raw in raws]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", n) for n in names)


def test_sixty_four_character_names_stay_unique() -> None:
    used: set[str] = set()
    long = "a" * 100
    assert tool_name(long, used) == "a" * 64
    assert tool_name(long, used) == "a" * 62 + "_2"
    assert tool_name("2fa/{id}", used) == "op_2fa_by_id"


@given(st.text(max_size=60), st.one_of(st.none(), st.booleans(), st.integers(), st.text()))
def test_yaml_reads_back_what_was_written(key: str, value: object) -> None:
    data = {"tools": {key or "k": {"description": value, "enum": [value, "x"]}}}
    assert yaml.safe_load(dump(data, {("tools",): ["a note: # with marks"]})) == data


def test_unresolvable_parts_are_skipped_with_a_reason() -> None:
    result = import_openapi(
        doc(
            """
            openapi: 3.0.0
            info: {title: Odd, version: "1"}
            paths:
              /a: {get: {parameters: [{$ref: "#/components/parameters/Missing"}]}}
              /b:
                get:
                  parameters: [{name: sid, in: cookie, required: true, schema: {type: string}}]
              /c:
                post:
                  requestBody:
                    required: true
                    content: {multipart/form-data: {schema: {type: object}}}
              /d:
                get:
                  parameters: [{name: q, in: query, schema: {not: {type: string}}}]
            """
        )
    )
    reasons = {s.what: s.reason for s in result.skipped}
    assert reasons["GET /a"] == "$ref '#/components/parameters/Missing' cannot be resolved"
    assert reasons["GET /b"] == "required parameter 'sid': cookie parameters are not supported"
    assert reasons["POST /c"].startswith("required body: a request body of multipart/form-data")
    assert reasons["GET /d parameter 'q'"] == "the schema gives no type"
    assert list(result.config["tools"]) == ["get_d"]
    assert "http://localhost" in json.dumps(result.config["integrations"])


def test_refs_to_other_files_recursion_and_undeclared_path_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "schemas.yaml").write_text(
        textwrap.dedent(
            """
            Node:
              type: object
              properties:
                name: {type: string}
                children: {type: array, items: {$ref: "#/Node"}}
                parent: {$ref: "#/Node"}
            """
        )
    )
    (tmp_path / "api.yaml").write_text(
        textwrap.dedent(
            """
            openapi: 3.1.0
            info: {title: Trees, version: "1"}
            servers: [{url: "https://{tenant}.trees.example"}]
            paths:
              /forests/{forest}/nodes:
                post:
                  operationId: createNode
                  requestBody:
                    content: {application/json: {schema: {$ref: "schemas.yaml#/Node"}}}
              /loop:
                post:
                  operationId: loop
                  requestBody:
                    content: {application/json: {schema: {$ref: "#/components/schemas/A"}}}
            components:
              schemas:
                A: {allOf: [{$ref: "#/components/schemas/B"}]}
                B: {allOf: [{$ref: "#/components/schemas/A"}]}
            """
        )
    )
    document, uri = load_document(tmp_path / "api.yaml")
    result = import_openapi(document, uri=uri)
    config = validated(result, {}, monkeypatch)
    node = config.tools["create_node"]
    assert list(node.parameters) == ["forest", "name", "children", "parent"]
    assert node.parameters["parent"].type == "object"  # through the other file, twice
    assert node.request is not None and node.request.path == "/forests/{forest}/nodes"
    # {tenant} has no default: the URL is left for a person to set
    assert config.integrations["trees"].base_url == "http://localhost"
    assert [str(s) for s in result.skipped] == [
        "POST /loop: request body: the schema nests or refers to itself too deeply"
    ]
    assert "path parameter 'forest' is not declared" in result.to_yaml()
