"""The cost of response contracts: `get_customer` with `response.expect` against without.

Both runtimes run the example's `get_customer` against the same billing API (a separate
process), interleaved over several rounds; the contract one checks every answer against a
JSON Schema of the customer record. Printed: CPU µs per call of each and their ratio, and
the validator's own cost on that answer and on a list of 50 invoices.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from typing import Any

from core import EXAMPLE

from patchbay import CallContext, ToolRuntime, load_config
from patchbay.runtime._contracts import ContractChecker
from patchbay.spec import Config, Tool
from patchbay.testing import BillingServer

CUSTOMER: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "status": {"type": "integer"},
        "data": {
            "type": "object",
            "required": ["customer"],
            "properties": {
                "customer": {
                    "type": "object",
                    "required": ["id", "name", "status", "tier"],
                    "properties": {
                        "id": {"type": "string"},
                        "name": {"type": "string"},
                        "status": {"type": "string"},
                        "tier": {"type": "string"},
                        "email": {"type": "string"},
                        "phone": {"type": "string"},
                    },
                }
            },
        },
    },
}
INVOICES: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["id", "amount", "status"],
        "properties": {
            "id": {"type": "string"},
            "amount": {"type": "integer"},
            "due_date": {"type": "string"},
            "status": {"type": "string"},
        },
    },
}


def _with_contract(config: Config) -> Config:
    tool = config.tools["get_customer"]
    spec = tool.response.model_copy(update={"expect": copy.deepcopy(CUSTOMER)})
    tools = {**config.tools, "get_customer": tool.model_copy(update={"response": spec})}
    return config.model_copy(update={"tools": tools})


async def _cpu_per_call(runtime: ToolRuntime, n: int) -> float:
    cpu = time.process_time()
    for i in range(n):
        result = await runtime.call_tool(
            "get_customer", {"customer_id": "cus_8F2kLq"}, CallContext(id=f"k-{i}")
        )
        if not result.ok:
            raise RuntimeError(result.to_json())
    return (time.process_time() - cpu) * 1e6 / n


def _validator_us(tool: Tool, body: Any, n: int = 20000) -> float:
    checker = ContractChecker()
    checker.prepare([tool])
    t0 = time.perf_counter()
    for _ in range(n):
        checker.check(tool, body, None)
    return (time.perf_counter() - t0) * 1e6 / n


async def bench_contracts(rounds: int = 7, n: int = 300) -> list[str]:
    """Lines to print: per-call CPU with and without a contract, and the validator alone."""
    async with BillingServer() as server:
        env = {**os.environ, "BILLING_URL": server.url, "BILLING_API_KEY": server.api_key}
        os.environ["BILLING_API_KEY"] = server.api_key
        plain_cfg = load_config(EXAMPLE, env=env)
        checked_cfg = _with_contract(plain_cfg)
        async with (
            ToolRuntime(plain_cfg, sinks=[]) as plain,
            ToolRuntime(checked_cfg, sinks=[]) as checked,
        ):
            await _cpu_per_call(plain, 50)
            await _cpu_per_call(checked, 50)
            without, with_ = [], []
            for _ in range(rounds):
                without.append(await _cpu_per_call(plain, n))
                with_.append(await _cpu_per_call(checked, n))
    a, b = statistics.median(without), statistics.median(with_)
    customer = {
        "status": 200,
        "data": {
            "customer": {
                "id": "cus_1",
                "name": "Jamie Patel",
                "status": "active",
                "tier": "premium",
                "email": "jamie@example.com",
                "phone": "+15551234567",
            }
        },
    }
    invoices = [
        {"id": f"inv_{i}", "amount": 100 * i, "due_date": "2026-03-01", "status": "open"}
        for i in range(50)
    ]
    tool = checked_cfg.tools["get_customer"]
    list_tool = tool.model_copy(
        update={"name": "invoices", "response": tool.response.model_copy(
            update={"expect": INVOICES, "root": None, "fields": None})}
    )  # fmt: skip
    return [
        f"get_customer CPU per call: {a:.0f} µs without a contract, {b:.0f} µs with ({b / a:.2f}x)",
        f"contract check alone: {_validator_us(tool, customer):.2f} µs for the customer, "
        f"{_validator_us(list_tool, invoices):.2f} µs for 50 invoices",
    ]
