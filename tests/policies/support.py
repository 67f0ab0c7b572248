"""Shared helpers for policy tests: an injected fake transport, a fake clock, small configs."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import yaml

from patchbay import CallContext, Config, ToolRuntime
from patchbay.http._build import build_request
from patchbay.http._types import ConnectError, Request, Response, TransportError
from patchbay.observe import Emitter, MemorySink
from patchbay.policies._base import Exchange, Policy, Send, chain
from patchbay.spec import load_config_text
from patchbay.state import MemoryStore, StateStore

Answer = Callable[[Request], Awaitable[Response]]


def json_response(status: int, body: Any) -> Response:
    """An upstream answer with a JSON body."""
    return Response(status, {"Content-Type": "application/json"}, json.dumps(body).encode())


class FakeTransport:
    """The Transport protocol answered by a script, recording every request sent."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.sent: list[Request] = []
        self.answer: Answer = answer or ok
        self.closed = False

    async def send(self, request: Request, timeout_s: float) -> Response:
        self.sent.append(request)
        async with asyncio.timeout(timeout_s):
            return await self.answer(request)

    async def close(self) -> None:
        self.closed = True

    def count(self, method: str) -> int:
        """Requests sent with this method."""
        return sum(1 for r in self.sent if r.method == method)


async def ok(request: Request) -> Response:
    """200 echoing the path and body, so answers differ per request."""
    return json_response(200, {"path": request.url.split("/", 3)[-1], "body": request.json})


def status(code: int) -> Answer:
    async def answer(request: Request) -> Response:
        return json_response(code, {"error": "scripted", "code": f"E{code}"})

    return answer


async def refused(request: Request) -> Response:
    raise ConnectError("connection refused")  # nothing was sent


async def reset(request: Request) -> Response:
    raise TransportError("connection reset")  # after sending: the upstream may have acted


def hang(seconds: float = 60.0) -> Answer:
    async def answer(request: Request) -> Response:
        await asyncio.sleep(seconds)
        return await ok(request)

    return answer


class Clock:
    """A settable clock for stores and policies (wall-clock style seconds)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


BASE: dict[str, Any] = {
    "version": 1,
    "integrations": {
        "api": {
            "base_url": "http://api.invalid",
            "timeout_s": 1,
            "retry": {"attempts": 1, "backoff_s": 0, "max_backoff_s": 0},
        }
    },
    "tools": {
        "get_item": {
            "integration": "api",
            "description": "Get an item.",
            "parameters": {"item_id": {"type": "string"}},
            "request": {"method": "GET", "path": "/items/{item_id}"},
            "say": {"failed": "I can't reach the item system."},
            "budget_s": 2,
        },
        "pay": {
            "integration": "api",
            "description": "Pay an invoice.",
            "parameters": {"invoice_id": {"type": "string"}, "amount": {"type": "integer"}},
            "request": {
                "method": "POST",
                "path": "/payments",
                "body": {"invoice_id": "{args.invoice_id}", "amount": "{args.amount}"},
            },
            "idempotency": {"key": "call_{call.id}_invoice_{args.invoice_id}"},
            "say": {"failed": "I couldn't take the payment."},
            "budget_s": 2,
        },
    },
}


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def make_config(
    integration: dict[str, Any] | None = None, tools: dict[str, Any] | None = None
) -> Config:
    """BASE with `integration` merged into the `api` integration and `tools` into the tools."""
    data = copy.deepcopy(BASE)
    _merge(data["integrations"]["api"], integration or {})
    _merge(data["tools"], tools or {})
    return load_config_text(yaml.safe_dump(data))


async def no_sleep(_: float) -> None:
    return None


def make_runtime(
    config: Config,
    transport: FakeTransport,
    *,
    store: StateStore | None = None,
    sink: MemorySink | None = None,
    sleep: Callable[[float], Awaitable[None]] = no_sleep,
) -> ToolRuntime:
    """A runtime over the fake transport and a fresh memory store (unless one is given)."""
    return ToolRuntime(
        config,
        transport=transport,
        sinks=[sink] if sink is not None else [],
        sleep=sleep,
        store=store if store is not None else MemoryStore(),
    )


def exchange_for(
    config: Config,
    tool: str,
    *,
    call_id: str = "c-1",
    tenant: str | None = None,
    budget_s: float | None = None,
    sink: MemorySink | None = None,
) -> Exchange:
    """A fresh exchange, as the runtime would make it, for driving policies directly."""
    spec = config.tools[tool]
    return Exchange(
        tool=spec,
        integration=config.integrations[spec.integration],
        call=CallContext(id=call_id, tenant=tenant),
        deadline=time.monotonic() + (budget_s if budget_s is not None else spec.budget_s),
        emitter=Emitter([sink] if sink is not None else []),
    )


def request_for(exchange: Exchange, **args: Any) -> Request:
    """The tool's request for `args`."""
    return build_request(exchange.tool, exchange.integration, args, exchange.call)


def pipeline(policies: list[Policy], transport: FakeTransport) -> Send:
    """The policies around a send straight to the fake transport."""

    async def send(request: Request, exchange: Exchange) -> Response:
        exchange.attempts += 1
        exchange.sent = True
        return await transport.send(request, max(exchange.remaining(), 0.001))

    return chain(policies, send)
