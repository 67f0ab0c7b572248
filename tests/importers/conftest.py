"""Shared by the import tests: the example billing API described as OpenAPI 3.0."""

from __future__ import annotations

import textwrap

import pytest

# The example billing service's own shape, as its team would describe it.
BILLING = textwrap.dedent(
    """
    openapi: 3.0.3
    info: {title: Billing API, version: "1.0"}
    servers: [{url: "http://127.0.0.1:8042"}]
    security: [{apiKey: []}]
    components:
      securitySchemes:
        apiKey: {type: apiKey, in: header, name: X-API-Key}
      parameters:
        CustomerId:
          name: id
          in: path
          required: true
          schema: {type: string, pattern: "^cus_[A-Za-z0-9]+$"}
      schemas:
        Money: {type: integer, minimum: 1, description: Amount in cents}
        PaymentBase:
          type: object
          required: [customer_id, invoice_id]
          properties:
            customer_id: {type: string}
            invoice_id: {type: string}
        Payment:
          allOf:
            - $ref: "#/components/schemas/PaymentBase"
            - type: object
              required: [amount, payment_method_id]
              properties:
                amount: {$ref: "#/components/schemas/Money"}
                payment_method_id: {type: string}
                metadata:
                  type: object
                  properties: {note: {type: string}, source: {type: string}}
                id: {type: string, readOnly: true}
    paths:
      /customers/search:
        get:
          operationId: searchCustomers
          summary: Find a customer by phone or email.
          tags: [customers]
          parameters:
            - {name: phone, in: query, schema: {type: string}}
            - {name: email, in: query, schema: {type: string, format: email}}
      /customers/{id}:
        parameters: [{$ref: "#/components/parameters/CustomerId"}]
        get:
          operationId: getCustomer
          summary: Fetch a customer by id.
          tags: [customers]
          responses:
            "200":
              description: The customer.
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      status: {type: integer}
                      data:
                        type: object
                        properties:
                          customer:
                            type: object
                            properties: {id: {type: string}, name: {type: string}}
        delete:
          operationId: deleteCustomer
          tags: [customers, admin]
          description: >-
            Deletes a customer permanently. This cannot be undone: it removes every invoice,
            every payment and the whole history of the account, which a support agent should
            almost never do on a phone call, and never without a second person approving it
            in writing first, following the data retention policy of the company.
      /invoices:
        get:
          operationId: listInvoices
          summary: List a customer's invoices.
          tags: [invoices]
          parameters:
            - {name: customer_id, in: query, required: true, schema: {type: string}}
            - {name: status, in: query, schema: {type: string, enum: [open, paid]}}
      /payments:
        post:
          operationId: createPayment
          summary: Pay an invoice.
          tags: [payments]
          parameters:
            - {name: Idempotency-Key, in: header, required: true, schema: {type: string}}
          requestBody:
            required: true
            content:
              application/json:
                schema: {$ref: "#/components/schemas/Payment"}
    """
)


@pytest.fixture
def billing_openapi() -> str:
    """The billing API's OpenAPI document, as YAML text."""
    return BILLING
