"""The example billing call, scripted: what the caller says, what the LLM decides, what it hears.

A scripted stand-in for the LLM keeps the demo free of models and network; the tool calls go
through patchbay exactly as a real agent's would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from patchbay import CallContext, ToolResult, ToolRuntime

Say = Callable[[str, str], None]
ShowCall = Callable[[str, dict[str, Any]], None]
ShowResult = Callable[[ToolResult], None]


@dataclass
class Transcript:
    """What happened on the call, for the demo's screen and the end-to-end test."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    results: list[ToolResult] = field(default_factory=list)

    def spoken(self) -> str:
        """Everything the agent said, as one text."""
        return "\n".join(text for who, text in self.lines if who == "agent")


def dollars(cents: int) -> str:
    """24700 -> $247.00."""
    return f"${cents / 100:,.2f}"


async def play(
    runtime: ToolRuntime,
    call: CallContext,
    *,
    say: Say = lambda who, text: None,
    show_call: ShowCall = lambda name, args: None,
    show_result: ShowResult = lambda result: None,
) -> Transcript:
    """Play the call: pay a bill by phone number."""
    t = Transcript()

    def line(who: str, text: str) -> None:
        t.lines.append((who, text))
        say(who, text)

    async def tool(name: str, args: dict[str, Any]) -> ToolResult:
        show_call(name, args)
        result = await runtime.call_tool(name, args, call)
        t.results.append(result)
        show_result(result)
        return result

    line("caller", "I want to pay my bill.")
    line("agent", "Sure, let me look that up. Can I get your phone number?")
    line("caller", "555-123-4567.")
    found = await tool("lookup_customer_invoices", {"phone": "+15551234567"})
    if not found.ok or not found.result.get("found"):
        line("agent", found.say or "I couldn't find an account with that number.")
        return t
    invoice = found.result["invoices"][0]
    line(
        "agent",
        f"Thanks, {found.result['customer_name'].split()[0]}. I see a {dollars(invoice['amount'])}"
        f" open invoice due {invoice['due_date']}. Want to pay it now with the card on file?",
    )
    line("caller", "Yes.")
    paid = await tool(
        "create_payment",
        {
            "invoice_id": invoice["invoice_id"],
            "amount": invoice["amount"],
            "payment_method_id": "pm_card_visa4242",
        },
    )
    if paid.ok and paid.result.get("success"):
        line(
            "agent",
            f"Payment of {dollars(paid.result['amount'])} confirmed, confirmation number "
            f"{paid.result['confirmation_number']}. Anything else?",
        )
    else:
        line("agent", paid.say or "I couldn't take the payment right now.")
    return t
