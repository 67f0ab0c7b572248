"""Fixtures for the Pipecat and LiveKit adapter tests: the example billing API behind a fault
proxy, a runtime over the example config that reaches it, and the scripted model of the call.

The scripted model stands in for the LLM only: it decides the next tool call from the tool
outputs the framework put in its context, and words its last reply from those outputs alone, so
a fact the caller hears is a fact the framework delivered. (Tests run with
``--import-mode=importlib``, so shared helpers reach test modules as the `script` fixture.)
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from patchbay import Config, ToolRuntime, load_config
from patchbay.testing import BillingServer, FaultProxy

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "billing" / "patchbay.yaml"


@dataclass(frozen=True)
class Move:
    """What the scripted model does next: call a tool, or speak."""

    tool: str | None = None
    arguments: Mapping[str, Any] | None = None
    text: str | None = None


class Script:
    """The example conversation as a model plays it, and helpers to watch it happen."""

    example = EXAMPLE
    caller_says = "I want to pay my bill. My number is 555-123-4567."
    lookup = "lookup_customer_invoices"
    payment = "create_payment"
    lookup_args: Mapping[str, Any] = {"phone": "555-123-4567"}
    payment_args: Mapping[str, Any] = {
        "invoice_id": "inv_1001",
        "amount": 24700,
        "payment_method_id": "pm_card_visa4242",
    }
    confirmation = re.compile(r"PAY-[A-Za-z0-9-]+")

    def next_move(self, outputs: Sequence[tuple[str, str]]) -> Move:
        """The next step, given the (tool name, output text) pairs read so far."""
        names = [name for name, _ in outputs]
        if self.lookup not in names:
            return Move(tool=self.lookup, arguments=self.lookup_args)
        if self.payment not in names:
            return Move(tool=self.payment, arguments=self.payment_args)
        return Move(text=self.reply(outputs))

    def reply(self, outputs: Sequence[tuple[str, str]]) -> str:
        """The agent's last line, worded only from what the tools answered."""
        heard = dict(outputs)
        try:
            found = json.loads(heard[self.lookup])["result"]
            paid = json.loads(heard[self.payment])["result"]
            first_name = found["customer_name"].split()[0]
            return (
                f"Thanks, {first_name}. Your payment of {paid['amount']} cents is confirmed, "
                f"confirmation number {paid['confirmation_number']}."
            )
        except (KeyError, TypeError, ValueError):
            return f"Something went wrong: {heard}"

    @staticmethod
    async def until(check: Callable[[], Awaitable[bool] | bool], within: float = 5.0) -> None:
        """Poll `check` until it holds; fail the test after `within` seconds."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            outcome = check()
            if isinstance(outcome, Awaitable):
                outcome = await outcome
            if outcome:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.02)

    @staticmethod
    def with_tool(config: Config, name: str, **changes: Any) -> Config:
        """`config` with one tool's settings changed (budget_s, write, ...)."""
        tool = config.tools[name].model_copy(update=changes)
        return config.model_copy(update={"tools": {**config.tools, name: tool}})

    @staticmethod
    async def requests_seen(billing: BillingServer, route: str) -> int:
        """How many requests the billing API received for `route` ("GET /invoices")."""
        ledger = await billing.ledger()
        count: int = ledger["requests_by_path"].get(route, 0)
        return count


@pytest.fixture
def script() -> Script:
    """The scripted example conversation."""
    return Script()


@pytest.fixture
async def billing(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[BillingServer]:
    """The example billing API on loopback, seeded with Jamie Patel's open invoice."""
    async with BillingServer(in_process=True) as server:
        # The config's `env:BILLING_API_KEY` secret is read from the environment.
        monkeypatch.setenv("BILLING_API_KEY", server.api_key)
        yield server


@pytest.fixture
async def proxy(billing: BillingServer) -> AsyncIterator[FaultProxy]:
    """A proxy in front of the billing API, to make requests slow on demand."""
    async with FaultProxy(billing.url) as fronted:
        yield fronted


@pytest.fixture
def config(billing: BillingServer, proxy: FaultProxy) -> Config:
    """The example config, reaching the billing API through the proxy."""
    return load_config(str(EXAMPLE), env={"BILLING_URL": proxy.url})


@pytest.fixture
async def runtime(config: Config) -> AsyncIterator[ToolRuntime]:
    """A runtime over the example config."""
    async with ToolRuntime(config) as rt:
        yield rt
