"""Shapes real API descriptions use (found importing the public OpenAPI directory): each is
imported into a config that validates, and the tool asks for what the API checks."""

from __future__ import annotations

import re
import textwrap
from typing import Any

import yaml

from patchbay.importers import import_openapi
from patchbay.spec import SchemaFormat, export_tools, load_config_text, parameters_schema

DOC = textwrap.dedent(
    """
    openapi: 3.0.1
    info: {title: Real Shapes, version: "1"}
    servers: [{url: "https://api.shapes.example"}]
    security: [{oauth: [], clientId: []}]
    components:
      securitySchemes:
        clientId: {type: apiKey, in: header, name: X-Client-Id}
        oauth:
          type: oauth2
          flows:
            authorizationCode:
              authorizationUrl: https://accounts.shapes.example/auth
              tokenUrl: https://accounts.shapes.example/token
              scopes: {read: read things}
    paths:
      /v1/things:
        get:
          operationId: GetThings
          summary: List things; the API's text mentions ${NOT_A_VARIABLE}.
          parameters:
            - {name: X-Market-Id, in: header, required: true, schema: {type: string}}
            - name: starting_after
              in: query
              schema: {oneOf: [{type: string}, {type: integer}]}
            - name: created
              in: query
              schema:
                anyOf:
                  - {type: string, enum: [day, week]}
                  - {type: string, enum: [month]}
            - name: expand
              in: query
              schema: {anyOf: [{type: object}, {type: string, enum: [""]}]}
          requestBody:
            content:
              application/x-www-form-urlencoded:
                schema: {type: object, properties: {}, additionalProperties: false}
          responses:
            "200":
              description: ok
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      data: {type: array, items: {type: object, properties: {id: {type: string}}}}
      /v1/things/{thing}:
        get:
          operationId: GetThing
          summary: Fetch a thing.
          parameters:
            - {name: thing, in: path, required: true, schema: {type: string, format: uuid}}
            - {name: page, in: query, schema: {type: integer, format: int32, minimum: 1}}
            - name: above
              in: query
              schema: {type: integer, minimum: 0, exclusiveMinimum: true}
            - {name: host, in: query, schema: {type: string, format: ipv4}}
            - {name: tags, in: query, required: true, schema: {type: array, items: {type: string}}}
            - {name: region, in: query, required: true}
          responses: {"200": {description: ok}}
      /v1/notes:
        put:
          operationId: PutNote
          summary: Store a note.
          requestBody:
            required: true
            content: {"*/*": {schema: {type: object, properties: {text: {type: string}}}}}
          responses: {"200": {description: ok}}
      /v1/certificates:
        post:
          operationId: PostCertificate
          summary: Issue a certificate.
          requestBody:
            required: true
            content:
              application/json:
                schema:
                  type: object
                  required: [txnId, certificateParameters]
                  properties:
                    txnId: {type: string}
                    certificateParameters:
                      type: object
                      required: [PolicyNo]
                      properties: {PolicyNo: {type: string}, DOB: {type: string}}
                    extras: {type: object, properties: {note: {type: string}}}
          responses: {"200": {description: ok}}
    """
)


def _doc() -> dict[str, Any]:
    loaded = yaml.safe_load(DOC)
    assert isinstance(loaded, dict)
    return loaded


def test_real_shapes_become_tools_that_ask_for_what_the_api_checks() -> None:
    result = import_openapi(_doc())
    assert result.skipped == []
    # A user's OAuth2 flow: the access token a person obtained, sent as a bearer token.
    assert result.config["integrations"]["real_shapes"]["auth"] == {
        "type": "bearer",
        "secret": "env:REAL_SHAPES_TOKEN",
    }
    # Keys asked for together with the chosen scheme: headers from variables of their own.
    assert result.config["integrations"]["real_shapes"]["headers"] == {
        "X-Client-Id": "${REAL_SHAPES_CLIENTID}"
    }
    assert "REAL_SHAPES_CLIENTID" in result.env
    env = {"REAL_SHAPES_TOKEN": "t", "REAL_SHAPES_CLIENTID": "c"}
    config = load_config_text(result.to_yaml(), env=env)
    assert config.integrations["real_shapes"].headers == {"X-Client-Id": "c"}
    things = config.tools["get_things"]
    assert things.request is not None and things.request.body is None  # an empty form: no body
    assert "${NOT_A_VARIABLE}" in things.description  # the document's text, not interpolated
    # Text on the wire: a choice of scalars is a string; one type's forms merge their values.
    assert things.parameters["starting_after"].type == "string"
    assert things.parameters["created"].enum == ("day", "week", "month")
    assert things.parameters["expand"].type == "object"  # "" to clear it is not offered
    header = things.parameters["X_Market_Id"]
    assert header.pattern is not None and re.fullmatch(header.pattern, "EBAY_US")
    assert not re.fullmatch(header.pattern, "") and not re.fullmatch(header.pattern, " x")
    thing = config.tools["get_thing"].parameters
    assert thing["thing"].pattern is not None and thing["thing"].min_length == 1
    assert re.fullmatch(thing["thing"].pattern, "6e2ef9b4-6b9f-e7a6-0aee-f40b1f65e9f0")
    assert not re.fullmatch(thing["thing"].pattern, "not-a-uuid")
    assert thing["page"].minimum == 1 and thing["page"].maximum == 2**31 - 1
    assert thing["above"].minimum == 1  # exclusive 0 for an integer
    assert thing["tags"].min_items == 1  # an empty list would send nothing
    assert thing["region"].type == "string" and thing["region"].min_length == 1
    note = config.tools["put_note"].request
    assert note is not None and note.body == {"text": "{args.text}"}  # */* takes JSON
    assert thing["host"].pattern is not None and re.fullmatch(thing["host"].pattern, "10.0.0.1")
    assert not re.fullmatch(thing["host"].pattern, "300.0.0.1")
    # A required object whose fields the API checks: each field an argument of its own.
    cert = config.tools["post_certificate"]
    assert cert.request is not None and cert.request.body == {
        "txnId": "{args.txnId}",
        "certificateParameters": {
            "PolicyNo": "{args.certificateParameters_PolicyNo}",
            "DOB": "{args.certificateParameters_DOB}",
        },
        "extras": "{args.extras}",
    }
    assert cert.is_required("certificateParameters_PolicyNo")
    assert not cert.is_required("certificateParameters_DOB")
    assert cert.parameters["extras"].type == "object"  # optional: stays free-form
    for fmt in SchemaFormat:
        export_tools(config.tools.values(), fmt, strict=True)
    schema = parameters_schema(config.tools["get_thing"], strict=True)
    assert schema["properties"]["thing"]["minLength"] == 1
