"""The example billing call, scripted: what the caller says, what the LLM decides, what it hears.

A scripted stand-in for the LLM keeps the demo free of models and network; the tool calls go
through patchbay exactly as a real agent's would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from patchbay import CallContext, ToolResult, ToolRuntime
from patchbay.runtime import CallEvent

Say = Callable[[str, str], None]
ShowCall = Callable[[str, dict[str, Any]], None]
ShowResult = Callable[[ToolResult], None]
ShowEvent = Callable[[CallEvent], None]


@dataclass
class Transcript:
    """What happened on the call, for the demo's screen and the end-to-end test."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    results: list[ToolResult] = field(default_factory=list)
    events: list[CallEvent] = field(default_factory=list)  # what reached the call meanwhile

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


async def play_async(
    runtime: ToolRuntime,
    call: CallContext,
    *,
    say: Say = lambda who, text: None,
    show_call: ShowCall = lambda name, args: None,
    show_result: ShowResult = lambda result: None,
    show_event: ShowEvent = lambda event: None,
    wait_s: float = 10.0,
) -> Transcript:
    """Play the second call: a payment that clears mid-call, told by the billing API's webhook.

    The agent listens to the call's events (`runtime.call_events`) the whole call, as a voice
    framework adapter does, and speaks the words an event brings as soon as it arrives.
    """
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

    async with runtime.call_events(call) as events:
        line("caller", "Hi, I'd like to pay my oldest invoice.")
        line("agent", "Of course. Let me find your account from the number you're calling from.")
        found = await tool("lookup_customer_invoices", {"phone": call.caller})
        if not found.ok or not found.result.get("found"):
            line("agent", found.say or "I couldn't find an account with that number.")
            return t
        invoice = found.result["invoices"][0]
        line(
            "agent",
            f"Thanks, {found.result['customer_name'].split()[0]}. Your oldest open invoice is "
            f"{dollars(invoice['amount'])}, due {invoice['due_date']}. Pay it now with the card "
            "on file?",
        )
        line("caller", "Yes, please.")
        started = await tool(
            "create_payment_async",
            {
                "invoice_id": invoice["invoice_id"],
                "amount": invoice["amount"],
                "payment_method_id": "pm_card_mc5454",
            },
        )
        if not started.ok or not started.result.get("processing"):
            line("agent", started.say or "I couldn't start the payment right now.")
            return t
        line(
            "agent",
            f"Your payment of {dollars(started.result['amount'])} is processing; I'll tell you "
            "as soon as it clears.",
        )
        line("caller", "Great, I'll hold.")
        try:
            async with asyncio.timeout(wait_s):
                async for event in events:
                    t.events.append(event)
                    show_event(event)
                    if event.say and event.event == "payment.succeeded":
                        line("agent", f"{event.say} Anything else?")
                        return t
        except TimeoutError:
            pass  # not cleared within the wait: the agent says so below
        line("agent", "It's still processing; you'll get a text as soon as it clears.")
    return t
