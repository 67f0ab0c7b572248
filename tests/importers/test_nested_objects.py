"""Importing object arguments with their fields, so the API's inner required fields hold."""

from __future__ import annotations

import textwrap
from typing import Any

import jsonschema
import yaml

from patchbay.importers import import_openapi
from patchbay.spec import SchemaFormat, export_tools, load_config_text, parameters_schema
from patchbay.spec._nested import MAX_NESTING

DOCUMENT = """
openapi: 3.0.3
info: {title: Shop, version: "1"}
servers: [{url: "https://shop.example.test"}]
paths:
  /orders:
    post:
      operationId: createOrder
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [order_id]
              properties:
                order_id: {type: string}
                shipping: {$ref: "#/components/schemas/Address"}
                lines:
                  type: array
                  items:
                    type: object
                    required: [sku]
                    properties:
                      sku: {type: string}
                      qty: {type: integer, format: int32}
                      id: {type: string, readOnly: true}
                tree: {$ref: "#/components/schemas/Node"}
      responses: {"201": {description: created}}
components:
  schemas:
    Address:
      type: object
      description: Where to ship.
      required: [city]
      properties:
        city: {type: string, minLength: 1}
        zip: {type: string}
        kind: {type: string, enum: [home, work], default: home}
    Node:
      type: object
      properties:
        name: {type: string}
        child: {$ref: "#/components/schemas/Node"}
"""


def _imported() -> Any:
    loaded = yaml.safe_load(textwrap.dedent(DOCUMENT))
    return import_openapi(loaded)


def test_an_optional_object_keeps_its_inner_required_field() -> None:
    config = load_config_text(_imported().to_yaml())
    (tool,) = config.tools.values()
    shipping = tool.parameters["shipping"]
    assert tool.is_required("shipping") is False
    assert shipping.type == "object" and shipping.properties is not None
    assert set(shipping.properties) == {"city", "zip", "kind"}
    assert shipping.properties["city"].required is None  # required: the schema says so
    assert shipping.properties["city"].min_length == 1
    assert shipping.properties["zip"].required is False
    assert shipping.properties["kind"].default == "home"  # optional through its default
    item = tool.parameters["lines"].items
    assert item is not None and item.properties is not None
    assert set(item.properties) == {"sku", "qty"}  # readOnly fields are the API's own
    assert item.properties["qty"].required is False and item.properties["sku"].required is None


def test_recursion_is_cut_at_the_nesting_bound_as_a_free_form_object() -> None:
    (tool,) = load_config_text(_imported().to_yaml()).tools.values()
    node = tool.parameters["tree"]
    levels = 0
    while node.properties is not None:
        levels += 1
        node = node.properties["child"]
    assert levels == MAX_NESTING
    assert node.type == "object" and node.properties is None


def test_the_exported_schema_holds_inner_required_fields_and_is_strict_valid() -> None:
    config = load_config_text(_imported().to_yaml())
    tools = list(config.tools.values())
    (tool,) = tools
    plain = parameters_schema(tool)
    validator = jsonschema.Draft202012Validator(plain)
    assert not validator.is_valid({"order_id": "o", "shipping": {"zip": "1"}})
    assert validator.is_valid({"order_id": "o", "shipping": {"city": "Oslo"}})
    assert not validator.is_valid({"order_id": "o", "lines": [{"qty": 1}]})
    # the free-form innermost tree node keeps the tool from strict mode; without it, strict
    assert not any(d["function"]["strict"] for d in export_tools(tools, SchemaFormat.OPENAI))
    strict_tool = tool.model_copy(
        update={"parameters": {k: v for k, v in tool.parameters.items() if k != "tree"}}
    )
    (definition,) = export_tools([strict_tool], SchemaFormat.OPENAI)
    assert definition["function"]["strict"] is True
    schema = definition["function"]["parameters"]
    jsonschema.Draft202012Validator.check_schema(schema)
    nodes = [schema]
    while nodes:
        node = nodes.pop()
        if "object" in node["type"]:
            assert node["additionalProperties"] is False
            assert sorted(node["required"]) == sorted(node["properties"])
            nodes += node["properties"].values()
        if "items" in node:
            nodes.append(node["items"])
    shipping = schema["properties"]["shipping"]
    assert shipping["type"] == ["object", "null"]
    assert shipping["properties"]["city"]["type"] == "string"  # required inside: never null
    assert shipping["properties"]["zip"]["type"] == ["string", "null"]
