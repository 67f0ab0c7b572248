"""The billing API as tools with resilience settings, for tests against a real local server."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from patchbay import Config, ToolRuntime
from patchbay.spec import load_config_text

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "billing"
JAMIE = "cus_8F2kLq"
MORGAN = "cus_3Hd9Wm"

RuntimeFactory = Callable[..., ToolRuntime]

BASE: dict[str, Any] = {
    "version": 1,
    "integrations": {
        "billing": {
            "base_url": "${BILLING_URL}",
            "auth": {"type": "api_key", "header": "X-API-Key", "secret": "env:BILLING_API_KEY"},
            "timeout_s": 1,
            "retry": {"attempts": 1, "backoff_s": 0.01, "max_backoff_s": 0.05},
            "operations": [
                {"method": "GET", "path": "/customers/search"},
                {"method": "GET", "path": "/invoices"},
            ],
        }
    },
    "tools": {
        "get_customer": {
            "integration": "billing",
            "description": "Fetch a customer's name and status by customer id.",
            "parameters": {"customer_id": {"type": "string"}},
            "request": {"method": "GET", "path": "/customers/{customer_id}"},
            "response": {
                "root": "data.customer",
                "fields": {"customer_name": "name", "status": "status"},
                "messages": {"CS_404": "customer not found"},
            },
            "say": {"failed": "I can't reach billing right now."},
            "budget_s": 2,
        },
        "lookup_customer_invoices": {
            "integration": "billing",
            "description": "Look up open invoices for a customer by phone.",
            "parameters": {"phone": {"type": "string"}},
            "handler": "billing_tools:lookup_customer_invoices",
            "budget_s": 3,
        },
        "pay_invoice": {
            "integration": "billing",
            "description": "Pay an open invoice.",
            "parameters": {
                "customer_id": {"type": "string"},
                "invoice_id": {"type": "string"},
                "amount": {"type": "integer"},
                "payment_method_id": {"type": "string"},
            },
            "request": {
                "method": "POST",
                "path": "/payments",
                "body": {
                    "customer_id": "{args.customer_id}",
                    "invoice_id": "{args.invoice_id}",
                    "amount": "{args.amount}",
                    "payment_method_id": "{args.payment_method_id}",
                },
            },
            "idempotency": {"key": "call_{call.id}_invoice_{args.invoice_id}"},
            "response": {
                "fields": {"confirmation_number": "confirmation_number", "amount": "amount"}
            },
            "say": {"failed": "I couldn't take the payment; nothing was charged."},
            "budget_s": 4,
        },
    },
}

PAYMENT = {
    "customer_id": MORGAN,
    "invoice_id": "inv_2001",
    "amount": 500,
    "payment_method_id": "pm_card_mc5454",
}


def _merge(into: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def billing_yaml(
    integration: Mapping[str, Any] | None = None,
    tools: Mapping[str, Any] | None = None,
    state: str | Mapping[str, str] = "memory",
) -> str:
    """BASE as YAML, with `integration` merged into `billing` and `tools` into the tools."""
    data = copy.deepcopy(BASE)
    data["state"] = state if isinstance(state, str) else dict(state)
    _merge(data["integrations"]["billing"], integration or {})
    _merge(data["tools"], tools or {})
    return yaml.safe_dump(data)


def billing_config(env: Mapping[str, str], text: str) -> Config:
    """Load YAML from `billing_yaml` against the server `env` points at."""
    return load_config_text(text, base_dir=EXAMPLE_DIR, env=env)
