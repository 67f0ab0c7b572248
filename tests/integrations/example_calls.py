"""The example conversation's two tool calls and what the caller must hear, for every surface."""

from __future__ import annotations

from pathlib import Path
from typing import Any

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "billing" / "patchbay.yaml"

# The example conversation's two tool calls, as the LLM makes them.
LOOKUP_ARGS: dict[str, Any] = {"phone": "555-123-4567"}
PAYMENT_ARGS: dict[str, Any] = {
    "invoice_id": "inv_1001",
    "amount": 24700,
    "payment_method_id": "pm_card_visa4242",
}


def assert_lookup_heard(llm: dict[str, Any]) -> None:
    """The lookup told the model the caller is Jamie with a 24700-cent open invoice."""
    assert llm["ok"] is True, llm
    result = llm["result"]
    assert result["customer_name"].split()[0] == "Jamie"
    assert result["invoices"][0] == {
        "invoice_id": "inv_1001",
        "amount": 24700,
        "due_date": "2026-03-01",
    }
    assert "meta" not in llm  # what the model reads, not the operator's envelope


def assert_payment_heard(llm: dict[str, Any]) -> str:
    """The payment told the model it succeeded, for 24700 cents; returns the confirmation."""
    assert llm["ok"] is True, llm
    result = llm["result"]
    assert result["success"] is True
    assert result["amount"] == 24700
    assert result["invoice_id"] == "inv_1001"
    confirmation: str = result["confirmation_number"]
    assert confirmation.startswith("PAY-")
    return confirmation


def assert_charged_once(ledger: dict[str, Any]) -> None:
    """The billing API took exactly one payment: inv_1001, 24700 cents."""
    assert ledger["charges_by_invoice"] == {"inv_1001": 1}
    assert ledger["amount_by_invoice"] == {"inv_1001": 24700}
