"""Helpers for spec tests: a temporary handler module and the documented example config."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

HANDLERS = """
async def lookup_customer_invoices(ctx, phone=None, email=None):
    return {"phone": phone, "email": email, "call": ctx}


def not_async(ctx):
    return None


def check_amount(args, call):
    return None
"""

EXAMPLE = """
version: 1
state: memory
integrations:
  billing:
    base_url: ${{BILLING_URL}}
    auth: {{type: api_key, header: X-API-Key, secret: env:BILLING_API_KEY}}
    version: {{header: X-API-Version, value: "2024-06-01"}}
    timeout_s: 5
    retry: {{attempts: 3, backoff_s: 0.2, max_backoff_s: 2}}
    rate_limit: {{per_second: 20, burst: 20}}
    breaker: {{failure_rate: 0.5, window: 20, min_calls: 10, open_s: 30}}
    quota: {{per_day: 10000}}
    tenants:
      acme: {{base_url: "https://acme.example", auth: {{type: api_key, secret: env:ACME_KEY}}}}
tools:
  get_customer:
    integration: billing
    description: Fetch a customer's name, status and tier by customer id.
    parameters:
      customer_id: {{type: string, pattern: "^cus_[A-Za-z0-9]+$"}}
    request: {{method: GET, path: "/customers/{{customer_id}}"}}
    response:
      root: data.customer
      fields: {{customer_name: name, status: status, account_tier: tier}}
      messages: {{CS_404: customer not found}}
    cache: {{ttl_s: 60}}
    budget_s: 3
  lookup_customer_invoices:
    integration: billing
    description: Look up open invoices for a customer by phone or email
    parameters:
      phone: {{type: string, format: e164}}
      email: {{type: string, format: email}}
    require: {{one_of: [phone, email]}}
    handler: {module}:lookup_customer_invoices
    say: {{delayed: "Still looking...", failed: "I can't reach billing right now."}}
  create_payment:
    integration: billing
    description: Pay an open invoice with a saved payment method.
    parameters:
      invoice_id: {{type: string, pattern: "^inv_[A-Za-z0-9]+$"}}
      amount: {{type: integer, minimum: 1, maximum: 1000000, description: cents}}
      payment_method_id: {{type: string}}
    request:
      method: POST
      path: /payments
      body: {{customer_id: "{{call.state.customer_id}}", invoice_id: "{{args.invoice_id}}",
             amount: "{{args.amount}}", payment_method_id: "{{args.payment_method_id}}"}}
    idempotency: {{key: "call_{{call.id}}_invoice_{{args.invoice_id}}"}}
"""

ENV = {"BILLING_URL": "http://127.0.0.1:8081"}


@pytest.fixture
def handler_module(tmp_path: Path) -> Callable[[str], str]:
    """Write a module under a fresh name into tmp_path; return the name to import."""

    def write(source: str = HANDLERS) -> str:
        name = f"pb_handlers_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write


@pytest.fixture
def example(tmp_path: Path, handler_module: Callable[[str], str]) -> Path:
    """The documented example config written as tmp_path/patchbay.yaml, with its handler module."""
    path = tmp_path / "patchbay.yaml"
    path.write_text(EXAMPLE.format(module=handler_module(HANDLERS)))
    return path


@pytest.fixture
def env() -> dict[str, str]:
    """The environment the example config needs."""
    return dict(ENV)
