"""The billing API as a GraphQL service (Ariadne on Starlette): customers by phone, invoices and
payments, failures as GraphQL errors with `extensions.code`, as GraphQL servers send them.

    python examples/graphql_billing/service.py --port 8044      # POST http://127.0.0.1:8044/graphql

`GraphQLBilling` runs it in a background thread for tests and demos.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from ariadne import MutationType, ObjectType, QueryType, make_executable_schema
from ariadne.asgi import GraphQL
from graphql import GraphQLError, GraphQLResolveInfo
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

SCHEMA = (Path(__file__).parent / "schema.graphql").read_text(encoding="utf-8")
PATH = "/graphql"
LOGGER = "graphql_billing"  # resolver errors are logged here (quiet it in tests)


def _error(message: str, code: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code})


@dataclass
class BillingData:
    """The service's state: customers, invoices, payments by idempotency key, and switches."""

    api_key: str | None = None  # required in X-API-Key when set
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: int = 0  # payments actually made (a replayed key makes none)
    ledger_down: bool = False  # Customer.balance fails: answers carry partial data
    fail_next: int = 0  # the next requests are answered 503 before any work
    requests: int = 0
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def sample(cls, api_key: str | None = None) -> BillingData:
        """The reference customers: Jamie Patel with one open invoice, and a locked account."""
        data = cls(api_key=api_key)
        data.customers = {
            "cus_8F2kLq": {
                "id": "cus_8F2kLq", "name": "Jamie Patel", "phone": "+15551234567",
                "email": "jamie@example.com", "status": "ACTIVE", "tier": "gold", "balance": 24700,
            },
            "cus_locked": {
                "id": "cus_locked", "name": "Casey Locked", "phone": "+15550000000",
                "email": None, "status": "SUSPENDED", "tier": "basic", "balance": 0,
            },
        }  # fmt: skip
        data.invoices = {
            "inv_1001": {"id": "inv_1001", "customerId": "cus_8F2kLq", "amount": 24700,
                         "dueDate": "2026-12-15", "status": "OPEN"},
            "inv_0990": {"id": "inv_0990", "customerId": "cus_8F2kLq", "amount": 19900,
                         "dueDate": "2026-11-15", "status": "PAID"},
        }  # fmt: skip
        return data


def _customer(data: BillingData, found: dict[str, Any] | None) -> dict[str, Any]:
    if found is None:
        raise _error("No customer matches.", "NOT_FOUND")
    if found["status"] == "SUSPENDED":
        raise _error("This account is locked.", "FORBIDDEN")
    return found


def build_schema(data: BillingData) -> Any:
    """The executable schema over `data`."""
    query, mutation, customer = QueryType(), MutationType(), ObjectType("Customer")

    @query.field("customerByPhone")
    def customer_by_phone(_: Any, info: GraphQLResolveInfo, phone: str) -> dict[str, Any]:
        found = next((c for c in data.customers.values() if c["phone"] == phone), None)
        return _customer(data, found)

    @query.field("customer")
    def customer_by_id(_: Any, info: GraphQLResolveInfo, id: str) -> dict[str, Any]:
        return _customer(data, data.customers.get(id))

    @query.field("invoices")
    def invoices(
        _: Any, info: GraphQLResolveInfo, customerId: str, status: str | None = "OPEN",
        first: int | None = 10,
    ) -> list[dict[str, Any]]:  # fmt: skip
        _customer(data, data.customers.get(customerId))
        found = [
            i for i in data.invoices.values()
            if i["customerId"] == customerId and (status is None or i["status"] == status)
        ]  # fmt: skip
        return found[: first or 10]

    @customer.field("balance")
    def balance(obj: dict[str, Any], info: GraphQLResolveInfo) -> int:
        if data.ledger_down:
            raise _error("The ledger is not answering.", "SERVICE_UNAVAILABLE")
        return int(obj["balance"])

    @customer.field("invoices")
    def customer_invoices(
        obj: dict[str, Any], info: GraphQLResolveInfo, status: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            i for i in data.invoices.values()
            if i["customerId"] == obj["id"] and (status is None or i["status"] == status)
        ]  # fmt: skip

    @mutation.field("createPayment")
    def create_payment(
        _: Any, info: GraphQLResolveInfo, input: dict[str, Any], idempotencyKey: str | None = None
    ) -> dict[str, Any]:
        request: Request = info.context["request"]
        key = idempotencyKey or request.headers.get("idempotency-key")
        if key and key in data.payments:
            return data.payments[key]  # the same key again: the same answer, no new charge
        if input["amount"] < 1:
            raise _error("amount must be at least 1 cent.", "BAD_USER_INPUT")
        invoice = data.invoices.get(input["invoiceId"])
        if invoice is None or invoice["customerId"] != input["customerId"]:
            raise _error("No such invoice for this customer.", "NOT_FOUND")
        if invoice["status"] != "OPEN":
            raise _error("This invoice is not open.", "CONFLICT")
        data.charges += 1
        invoice["status"] = "PAID"
        payment = {
            "status": "completed",
            "confirmationNumber": f"PAY-{next(data.numbers):06d}",
            "invoiceId": invoice["id"],
            "amount": input["amount"],
        }
        if key:
            data.payments[key] = payment
        return payment

    return make_executable_schema(SCHEMA, query, mutation, customer)


class _Gate:
    """Counts requests, answers 503 while `fail_next` lasts, and checks the API key."""

    def __init__(self, app: ASGIApp, data: BillingData) -> None:
        self.app = app
        self.data = data

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.data.requests += 1
        if self.data.fail_next > 0:
            self.data.fail_next -= 1
            await JSONResponse({"error": "overloaded"}, status_code=503)(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-api-key", b"").decode()
        if self.data.api_key is not None and given != self.data.api_key:
            # GraphQL servers refuse in a 200 with an extensions code, as Apollo does
            body = {"data": None, "errors": [
                {"message": "Missing or bad API key.", "extensions": {"code": "UNAUTHENTICATED"}}
            ]}  # fmt: skip
            await JSONResponse(body, status_code=200)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def build_app(data: BillingData) -> ASGIApp:
    """The ASGI app: the GraphQL endpoint at /graphql behind the gate."""
    graphql = GraphQL(build_schema(data), debug=False, logger=LOGGER)
    return _Gate(Starlette(routes=[Route(PATH, graphql, methods=["GET", "POST"])]), data)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class GraphQLBilling:
    """The service on a free loopback port in a background thread: `with GraphQLBilling() as s`."""

    def __init__(self, api_key: str | None = None) -> None:
        self.data = BillingData.sample(api_key)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}{PATH}"
        config = uvicorn.Config(
            build_app(self.data), host="127.0.0.1", port=self.port, log_level="warning",
            lifespan="off",
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> GraphQLBilling:
        logging.getLogger(LOGGER).setLevel(logging.CRITICAL)  # errors are what tests ask for
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the GraphQL billing service did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8044)
    parser.add_argument("--api-key", default=None, help="require this X-API-Key")
    args = parser.parse_args()
    data = BillingData.sample(args.api_key)
    uvicorn.run(build_app(data), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
