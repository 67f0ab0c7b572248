"""The example call, end to end through every gateway surface against the example billing API."""

from __future__ import annotations

import re

import pytest

from patchbay.testing import BillingServer

from .gateway_support import StackFactory, example_config
from .surfaces import SURFACES, call_through

LOOKUP = {"phone": "555-123-4567"}
PAYMENT = {"invoice_id": "inv_1001", "amount": 24700, "payment_method_id": "pm_card_visa4242"}


def dollars(cents: int) -> str:
    """24700 -> $247.00, as the agent says it."""
    return f"${cents / 100:,.2f}"


@pytest.mark.parametrize("surface", SURFACES)
async def test_the_example_call_through_each_surface(
    surface: str, billing: BillingServer, stack: StackFactory
) -> None:
    async with stack(example_config(billing.url)) as s:
        call_id = f"call-{surface}-1"
        found = await call_through(surface, s, "lookup_customer_invoices", LOOKUP, call_id)
        assert found["ok"] is True, found
        customer = found["result"]
        invoice = customer["invoices"][0]
        heard = (
            f"Thanks, {customer['customer_name'].split()[0]}. I see a {dollars(invoice['amount'])}"
            f" open invoice due {invoice['due_date']}."
        )
        assert heard == "Thanks, Jamie. I see a $247.00 open invoice due 2026-03-01."
        assert invoice == {"invoice_id": "inv_1001", "amount": 24700, "due_date": "2026-03-01"}

        paid = await call_through(surface, s, "create_payment", PAYMENT, call_id)
        assert paid["ok"] is True, paid
        receipt = paid["result"]
        assert receipt["success"] is True and receipt["amount"] == 24700
        assert re.fullmatch(r"PAY-[0-9A-F]+", receipt["confirmation_number"])

        # The platform sends the payment again (its own retry): the same receipt, no new charge.
        again = await call_through(surface, s, "create_payment", PAYMENT, call_id)
        assert again["result"]["confirmation_number"] == receipt["confirmation_number"]

    ledger = await billing.ledger()
    assert ledger["charges_by_invoice"] == {"inv_1001": 1}
    assert ledger["amount_by_invoice"] == {"inv_1001": 24700}
    [payment] = ledger["payments"]
    assert payment["customer_id"] == "cus_8F2kLq"
    assert payment["idempotency_key"] == f"call_call-{surface}-1_invoice_inv_1001"
