"""Response contracts: a 2xx answer's OpenAPI schema as the `response.expect` JSON Schema."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import jsonschema
import yaml
from hypothesis import given
from hypothesis import strategies as st

from patchbay.importers import import_openapi
from patchbay.importers._contract import MAX_DEPTH, response_contract
from patchbay.importers._source import Refs
from patchbay.importers._yaml import dump
from patchbay.spec import load_config_text

DOC = textwrap.dedent(
    """
    openapi: 3.0.3
    info: {title: Shop, version: "1"}
    servers: [{url: "https://shop.example"}]
    components:
      schemas:
        Node:
          type: object
          description: A tree node; its children are nodes too.
          properties:
            name: {type: string, pattern: "^(?i)x$", description: the node's name}
            children: {type: array, items: {$ref: "#/components/schemas/Node"}}
        Order:
          type: object
          required: [id, total, secret]
          properties:
            id: {type: string, format: uuid, example: abc}
            total: {type: number, minimum: 0, exclusiveMinimum: true}
            note: {type: string, nullable: true}
            status: {type: string, enum: [open, paid], nullable: true}
            secret: {type: string, writeOnly: true}
            kind: {oneOf: [{type: string}, {type: integer}]}
    paths:
      /orders/{id}:
        get:
          operationId: getOrder
          summary: Fetch an order.
          parameters: [{name: id, in: path, required: true, schema: {type: string}}]
          responses:
            "200":
              description: ok
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      data: {$ref: "#/components/schemas/Order"}
                      meta: {type: object, properties: {page: {type: integer}}}
            default: {description: error}
      /tree:
        get:
          operationId: getTree
          summary: The whole tree, described as ${TREE} in the API's own words.
          responses:
            "200":
              description: ok
              content: {application/json: {schema: {$ref: "#/components/schemas/Node"}}}
      /ping:
        post:
          operationId: ping
          summary: No content back.
          responses: {"204": {description: done}}
    """
)


def _doc() -> dict[str, Any]:
    loaded = yaml.safe_load(DOC)
    assert isinstance(loaded, dict)
    return loaded


def test_openapi_30_dialect_becomes_2020_12() -> None:
    doc = _doc()
    responses = doc["paths"]["/orders/{id}"]["get"]["responses"]
    contract = response_contract(Refs(doc), responses, "data")
    assert contract is not None
    jsonschema.Draft202012Validator.check_schema(contract)
    order = contract["properties"]["data"]
    assert order["properties"]["total"] == {"type": "number", "exclusiveMinimum": 0}
    assert order["properties"]["note"] == {"type": ["string", "null"]}
    assert order["properties"]["status"] == {
        "type": ["string", "null"],
        "enum": ["open", "paid", None],
    }
    # oneOf as anyOf; writeOnly fields are never in an answer, and not required of it
    assert order["properties"]["kind"] == {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert "secret" not in order["properties"] and order["required"] == ["id", "total"]
    # descriptions, examples, formats and patterns are not part of the contract
    text = json.dumps(contract)
    assert "uuid" not in text and "example" not in text and "description" not in text
    check = jsonschema.Draft202012Validator(contract)
    good = {"data": {"id": "o1", "total": 5, "note": None, "status": None}, "meta": {"page": 1}}
    assert check.is_valid(good)
    assert not check.is_valid({"data": {"id": "o1", "total": 0}})  # exclusive bound
    assert not check.is_valid({"data": {"id": "o1", "total": "5"}})
    assert not check.is_valid({"data": {"total": 5}})  # a required field is missing


def test_cycles_are_cut_and_depth_counts_from_the_root() -> None:
    doc = _doc()
    refs = Refs(doc)
    tree = response_contract(refs, doc["paths"]["/tree"]["get"]["responses"])
    assert tree is not None
    jsonschema.Draft202012Validator.check_schema(tree)
    # The node inside itself is cut: its children may be anything.
    assert tree["properties"]["children"] == {"type": "array"}
    assert "pattern" not in json.dumps(tree)  # an ECMA regex Python cannot read is dropped
    deep: dict[str, Any] = {"name": "a", "children": []}
    for _ in range(MAX_DEPTH + 5):
        deep = {"name": "n", "children": [deep]}
    assert jsonschema.Draft202012Validator(tree).is_valid(deep)
    # The same levels below a wrapper the root suggestion skips keep their full shape.
    responses = doc["paths"]["/orders/{id}"]["get"]["responses"]
    wrapped = response_contract(refs, responses, "data")
    bare = response_contract(refs, responses, None)
    assert wrapped is not None and bare is not None
    # Fields of fields keep their type alone; below a skipped wrapper, they are fields.
    assert wrapped["properties"]["data"]["properties"]["total"]["exclusiveMinimum"] == 0
    assert bare["properties"]["data"]["properties"]["total"] == {"type": "number"}
    assert bare["properties"]["meta"] == {
        "type": "object",
        "properties": {"page": {"type": "integer"}},
    }


def test_a_cycle_through_refs_alone_is_cut_to_anything() -> None:
    doc = {
        "openapi": "3.0.0",
        "components": {
            "schemas": {
                "A": {"$ref": "#/components/schemas/B"},
                "B": {"$ref": "#/components/schemas/A"},
            }
        },
        "paths": {},
    }
    answer = {
        "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/A"}}}}
    }
    assert response_contract(Refs(doc), answer) is None  # nothing checkable: no contract


def test_swagger_2_answers_and_x_nullable() -> None:
    doc = {"swagger": "2.0", "paths": {}}
    answer = {
        200: {
            "description": "ok",
            "schema": {
                "type": "object",
                "properties": {"n": {"type": "integer", "x-nullable": True, "maximum": 9}},
            },
        }
    }
    assert response_contract(Refs(doc), answer) == {
        "type": "object",
        "properties": {"n": {"type": ["integer", "null"], "maximum": 9}},
    }


def test_imported_tools_carry_the_contract_and_validate() -> None:
    result = import_openapi(_doc())
    tools = result.config["tools"]
    assert "expect" in tools["get_order"]["response"]
    assert "response" not in tools["ping"]  # 204: nothing to check
    assert "TREE" in result.to_yaml()
    config = load_config_text(result.to_yaml(), env={})
    expect = config.tools["get_order"].response.expect
    assert expect is not None and expect["properties"]["data"]["required"] == ["id", "total"]
    # Text from the document is never interpolated: ${TREE} stays as the API wrote it.
    assert "${TREE}" in config.tools["get_tree"].description
    assert (
        import_openapi(_doc(), contracts=False).config["tools"]["get_order"].get("response") is None
    )


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=40,
)


@given(st.lists(st.dictionaries(st.text(max_size=12), _JSON, min_size=1, max_size=6), max_size=4))
def test_contracts_lists_of_mappings_read_back_as_written(items: list[dict[str, Any]]) -> None:
    # A contract's `anyOf` is a list of mappings, written as blocks under their `-`.
    data = {"tools": {"t": {"response": {"expect": {"anyOf": items}}}}}
    assert yaml.safe_load(dump(data, {})) == data
