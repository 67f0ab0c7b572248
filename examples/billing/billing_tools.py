"""Python handlers of the billing example: work that needs more than one request."""

from __future__ import annotations

from typing import Any

from patchbay import HandlerContext, NotFound


async def lookup_customer_invoices(
    ctx: HandlerContext, phone: str | None = None, email: str | None = None
) -> dict[str, Any]:
    """Find the customer by phone or email, then list their open invoices."""
    query = {"phone": phone} if phone else {"email": email}
    try:
        found = await ctx.client.get("/customers/search", params=query)
    except NotFound:
        return {"found": False, "message": "no customer has that phone number or email"}
    customer = found["data"]["customer"]
    invoices = await ctx.client.get(
        "/invoices", params={"customer_id": customer["id"], "status": "open"}
    )
    # Later tools of this call use these (create_payment's body and its amount rule).
    ctx.state["customer_id"] = customer["id"]
    ctx.state["open_invoice_amount"] = max((i["amount"] for i in invoices), default=0)
    top = invoices[:5]
    return {
        "found": True,
        "customer_name": customer["name"],
        "invoice_count": len(invoices),
        "total_outstanding": sum(i["amount"] for i in invoices),
        "amounts_are": "cents",
        "invoices": [
            {"invoice_id": i["id"], "amount": i["amount"], "due_date": i["due_date"]} for i in top
        ],
        "more_invoices": max(0, len(invoices) - len(top)),
    }
