"""The example billing API as a real service: Starlette, SQLite and uvicorn.

Run it with ``python examples/billing/service.py --port 8042 [--db billing.sqlite3]``; the API key
is ``BILLING_API_KEY`` (default ``demo-key``). It imports nothing from patchbay on purpose: it
stands in for a company's own API, which patchbay only reaches over HTTP.

``POST /payments`` with ``"confirm": "async"`` answers 202 ``{"status": "processing", ...}`` and,
``--webhook-delay`` seconds later, sends ``payment.succeeded`` signed per Standard Webhooks to
``--webhook-url`` with the ``whsec_`` secret in ``BILLING_WEBHOOK_SECRET``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import secrets
import socket
import sqlite3
import threading
from datetime import UTC, datetime
from typing import Any

import uvicorn

# A sibling module: importable when run as a script and when patchbay.testing loads this file.
from billing_webhooks import WebhookSender
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

Json = dict[str, Any]

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, phone TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL UNIQUE, status TEXT NOT NULL, tier TEXT NOT NULL,
    internal_flags TEXT NOT NULL, risk_score INTEGER NOT NULL, address TEXT NOT NULL,
    created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS payment_methods (
    id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, brand TEXT NOT NULL, last4 TEXT NOT NULL,
    exp TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS invoices (
    id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, amount INTEGER NOT NULL,
    due_date TEXT NOT NULL, status TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS invoices_by_customer ON invoices (customer_id, status);
CREATE TABLE IF NOT EXISTS payments (
    confirmation_number TEXT PRIMARY KEY, customer_id TEXT NOT NULL, invoice_id TEXT NOT NULL,
    amount INTEGER NOT NULL, payment_method_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS payments_by_invoice ON payments (invoice_id);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS async_payments (
    payment_id TEXT PRIMARY KEY, confirmation_number TEXT NOT NULL, status TEXT NOT NULL);
"""

JAMIE = "cus_8F2kLq"
MORGAN = "cus_3Hd9Wm"
ALEX = "cus_7Tq1Zr"

_CUSTOMERS = [
    (JAMIE, "Jamie Patel", "+15551234567", "jamie.patel@example.com", "active", "premium",
     ["vip_watch"], 12, {"line1": "12 Harbor St", "city": "Portland", "state": "OR"},
     "2021-04-12T09:30:00Z"),
    (MORGAN, "Morgan Lee", "+15559876543", "morgan.lee@example.com", "active", "standard",
     [], 48, {"line1": "400 Elm Ave", "city": "Austin", "state": "TX"}, "2022-08-03T14:05:00Z"),
    (ALEX, "Alex Rivera", "+15550001111", "alex.rivera@example.com", "suspended", "basic",
     ["collections", "manual_review"], 91, {"line1": "9 Pine Rd", "city": "Denver", "state": "CO"},
     "2023-01-20T18:45:00Z"),
]  # fmt: skip

_PAYMENT_METHODS = [
    ("pm_card_visa4242", JAMIE, "visa", "4242", "12/28"),
    ("pm_card_mc5454", MORGAN, "mastercard", "5454", "06/27"),
    ("pm_card_amex0005", ALEX, "amex", "0005", "03/26"),
]

_INVOICES = [
    ("inv_1001", JAMIE, 24700, "2026-03-01", "open"),
    ("inv_0987", JAMIE, 19900, "2026-02-01", "paid"),
    *[
        (f"inv_{2000 + n}", MORGAN, 1500 + 250 * n, f"2026-{(n - 1) % 12 + 1:02d}-15", "open")
        for n in range(1, 13)
    ],
    ("inv_3001", ALEX, 8800, "2025-12-01", "paid"),
]


def seed(db: sqlite3.Connection) -> None:
    """Replace every row with the example's data: Jamie Patel owes $247.00."""
    db.executescript(SCHEMA)
    with db:
        tables = ("customers", "payment_methods", "invoices", "payments", "idempotency")
        for table in (*tables, "async_payments"):
            db.execute(f"DELETE FROM {table}")  # fixed names, never input
        db.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*c[:6], json.dumps(c[6]), c[7], json.dumps(c[8]), c[9]) for c in _CUSTOMERS],
        )
        db.executemany("INSERT INTO payment_methods VALUES (?, ?, ?, ?, ?)", _PAYMENT_METHODS)
        db.executemany("INSERT INTO invoices VALUES (?, ?, ?, ?, ?)", _INVOICES)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status)


def _e164(phone: str) -> str:
    # Callers say numbers many ways, and an unencoded "+" in a query string arrives as a space.
    digits = re.sub(r"\D", "", phone)
    return "+1" + digits if len(digits) == 10 else "+" + digits


class BillingStore:
    """The service's data: one SQLite connection, one lock, so requests never interleave."""

    def __init__(self, db_path: str) -> None:
        # isolation_level=None: transactions are opened explicitly, so a payment and its
        # idempotency record commit together or not at all.
        self.db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.lock = threading.Lock()
        self.requests = 0
        self.requests_by_path: dict[str, int] = {}
        if db_path != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        if self.db.execute("SELECT COUNT(*) FROM customers").fetchone()[0] == 0:
            seed(self.db)

    def reset(self) -> None:
        """Put the seed data back and forget every request seen."""
        with self.lock:
            seed(self.db)
            self.requests = 0
            self.requests_by_path.clear()

    def _customer(self, row: sqlite3.Row) -> Json:
        methods = self.db.execute(
            "SELECT id, brand, last4, exp FROM payment_methods WHERE customer_id = ? ORDER BY id",
            (row["id"],),
        ).fetchall()
        customer = dict(row)
        customer["internal_flags"] = json.loads(row["internal_flags"])
        customer["address"] = json.loads(row["address"])
        customer["payment_methods"] = [dict(m) for m in methods]
        customer["default_payment_method_id"] = methods[0]["id"] if methods else None
        return customer

    def find_customer(self, phone: str | None, email: str | None) -> Json | None:
        """The customer with this phone number, else with this email address."""
        with self.lock:
            row = None
            if phone:
                row = self.db.execute(
                    "SELECT * FROM customers WHERE phone = ?", (_e164(phone),)
                ).fetchone()
            if row is None and email:
                row = self.db.execute(
                    "SELECT * FROM customers WHERE lower(email) = ?", (email.strip().lower(),)
                ).fetchone()
            return None if row is None else self._customer(row)

    def get_customer(self, customer_id: str) -> Json | None:
        """The customer with this id."""
        with self.lock:
            row = self.db.execute("SELECT * FROM customers WHERE id = ?", (customer_id,)).fetchone()
            return None if row is None else self._customer(row)

    def invoices(self, customer_id: str, status: str | None) -> list[Json]:
        """A customer's invoices, oldest due first, optionally only those with one status."""
        sql = (
            "SELECT i.*, (SELECT COALESCE(SUM(p.amount), 0) FROM payments p"
            " WHERE p.invoice_id = i.id) AS paid FROM invoices i WHERE customer_id = ?"
        )
        params: tuple[str, ...] = (customer_id,)
        if status:
            sql, params = sql + " AND status = ?", (customer_id, status)
        with self.lock:
            rows = self.db.execute(sql + " ORDER BY due_date, id", params).fetchall()
        return [
            {
                "id": row["id"],
                "customer_id": row["customer_id"],
                "amount": row["amount"],
                "amount_due": 0 if row["status"] == "paid" else row["amount"] - row["paid"],
                "due_date": row["due_date"],
                "status": row["status"],
            }
            for row in rows
        ]

    def _paid(self, invoice_id: str) -> int:
        total = self.db.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM payments WHERE invoice_id = ?", (invoice_id,)
        ).fetchone()[0]
        return int(total)

    def pay(self, key: str, body: Json) -> tuple[int, Json, bool]:
        """Charge once per idempotency key: (status, body, replayed)."""
        fingerprint = hashlib.sha256(
            json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        with self.lock:
            # IMMEDIATE takes the write lock up front, so a second process on the same file
            # cannot read "no record yet" between our check and our insert.
            self.db.execute("BEGIN IMMEDIATE")
            try:
                status, answer, replayed = self._pay_locked(key, fingerprint, body)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT" if status in (201, 202) and not replayed else "ROLLBACK")
            return status, answer, replayed

    def _pay_locked(self, key: str, fingerprint: str, body: Json) -> tuple[int, Json, bool]:
        seen = self.db.execute(
            "SELECT fingerprint, status, body FROM idempotency WHERE key = ?", (key,)
        ).fetchone()
        if seen is not None:
            if seen["fingerprint"] != fingerprint:
                return (
                    409,
                    _err("PAY_409_KEY_REUSE", "idempotency key reused with another body"),
                    False,
                )
            return seen["status"], json.loads(seen["body"]), True
        invoice = self.db.execute(
            "SELECT * FROM invoices WHERE id = ?", (body["invoice_id"],)
        ).fetchone()
        if invoice is None or invoice["customer_id"] != body["customer_id"]:
            return 404, _err("INV_404", "invoice not found for this customer"), False
        amount = body["amount"]
        balance = (
            0 if invoice["status"] == "paid" else invoice["amount"] - self._paid(invoice["id"])
        )
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            return 422, _err("PAY_422_AMOUNT", "amount must be a positive integer of cents"), False
        if amount > balance:
            return (
                422,
                _err("PAY_422_AMOUNT", f"amount exceeds the open balance of {balance}"),
                False,
            )
        confirmation = "PAY-" + secrets.token_hex(5).upper()
        answer: Json = {"status": "completed", "confirmation_number": confirmation}
        status = 201
        if body.get("confirm") == "async":
            # Charged now, like the synchronous kind; the confirmation is told once it clears.
            answer = {"status": "processing", "payment_id": "pay_" + secrets.token_hex(8)}
            status = 202
            self.db.execute(
                "INSERT INTO async_payments VALUES (?, ?, 'processing')",
                (answer["payment_id"], confirmation),
            )
        answer |= {"invoice_id": invoice["id"], "amount": amount}
        self.db.execute(
            "INSERT INTO payments VALUES (?, ?, ?, ?, ?, ?, ?)",
            (confirmation, invoice["customer_id"], invoice["id"], amount,
             body["payment_method_id"], key, datetime.now(UTC).isoformat()),
        )  # fmt: skip
        if amount == balance:
            self.db.execute("UPDATE invoices SET status = 'paid' WHERE id = ?", (invoice["id"],))
        self.db.execute(
            "INSERT INTO idempotency VALUES (?, ?, ?, ?)",
            (key, fingerprint, status, json.dumps(answer)),
        )
        return status, answer, False

    def async_payment(self, payment_id: str) -> Json | None:
        """An asynchronous payment: its status, and its confirmation number once it has cleared."""
        with self.lock:
            row = self.db.execute(
                "SELECT a.payment_id, a.status, a.confirmation_number, p.invoice_id, p.amount"
                " FROM async_payments a JOIN payments p USING (confirmation_number)"
                " WHERE a.payment_id = ?",
                (payment_id,),
            ).fetchone()
        if row is None:
            return None
        found = dict(row)
        if found["status"] != "succeeded":
            del found["confirmation_number"]
        return found

    def settle(self, payment_id: str) -> Json | None:
        """Mark an asynchronous payment succeeded: its payment.succeeded data, None if unknown."""
        with self.lock, self.db:
            self.db.execute(
                "UPDATE async_payments SET status = 'succeeded' WHERE payment_id = ?",
                (payment_id,),
            )
        found = self.async_payment(payment_id)
        if found is None:
            return None  # forgotten by a reset meanwhile
        return {k: found[k] for k in ("payment_id", "invoice_id", "amount", "confirmation_number")}

    def ledger(self) -> Json:
        """Every payment taken and every request seen, for tests that count charges."""
        with self.lock:
            rows = self.db.execute("SELECT * FROM payments ORDER BY created_at").fetchall()
            payments = [dict(row) for row in rows]
            charges: dict[str, int] = {}
            amounts: dict[str, int] = {}
            for p in payments:
                charges[p["invoice_id"]] = charges.get(p["invoice_id"], 0) + 1
                amounts[p["invoice_id"]] = amounts.get(p["invoice_id"], 0) + p["amount"]
            return {
                "payments": payments,
                "charges_by_invoice": charges,
                "amount_by_invoice": amounts,
                "requests": self.requests,
                "requests_by_path": dict(self.requests_by_path),
            }


def _err(code: str, message: str) -> Json:
    return {"error": message, "code": code}


_UNCOUNTED = frozenset({"/_ledger", "/_reset", "/_health", "/_webhooks"})


class KeyAndCount:
    """Pure ASGI middleware: count every request, then refuse those without the API key."""

    def __init__(self, app: ASGIApp, store: BillingStore, api_key: str) -> None:
        self.app = app
        self.store = store
        self.key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count, check X-API-Key, pass on."""
        if scope["type"] != "http" or scope["path"] == "/_health":
            await self.app(scope, receive, send)
            return
        if scope["path"] not in _UNCOUNTED:
            self.store.requests += 1
            route = f"{scope['method']} {scope['path']}"
            self.store.requests_by_path[route] = self.store.requests_by_path.get(route, 0) + 1
        given = next((v for k, v in scope["headers"] if k == b"x-api-key"), None)
        if given is None or not secrets.compare_digest(given, self.key):
            await _error(401, "AUTH_401", "missing or invalid API key")(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(
    db_path: str = ":memory:",
    api_key: str = "demo-key",
    *,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    webhook_delay_s: float = 0.5,
    webhook_attempts: int = 5,
    webhook_backoff_s: float = 0.5,
) -> Starlette:
    """The billing API over the SQLite database at db_path, seeded when empty; asynchronous
    payments clear after webhook_delay_s, announced to webhook_url if given."""
    store = BillingStore(db_path)
    if webhook_url is not None and not webhook_secret:
        raise ValueError("a webhook URL needs its whsec_ secret (BILLING_WEBHOOK_SECRET)")
    sender = None
    if webhook_url is not None and webhook_secret:
        sender = WebhookSender(
            webhook_url, webhook_secret, attempts=webhook_attempts, backoff_s=webhook_backoff_s
        )
    settling: set[asyncio.Task[None]] = set()  # strong references: the loop keeps only weak ones

    async def settle_later(payment_id: str) -> None:
        await asyncio.sleep(webhook_delay_s)
        data = store.settle(payment_id)
        if data is not None and sender is not None:
            await sender.send("payment.succeeded", data)

    async def search(request: Request) -> Response:
        phone, email = request.query_params.get("phone"), request.query_params.get("email")
        if not phone and not email:
            return _error(400, "CS_400_QUERY", "give a phone or an email")
        found = store.find_customer(phone, email)
        if found is None:
            return _error(404, "CS_404", "customer not found")
        return JSONResponse({"status": 200, "data": {"customer": found}})

    async def customer(request: Request) -> Response:
        found = store.get_customer(request.path_params["customer_id"])
        if found is None:
            return _error(404, "CS_404", "customer not found")
        return JSONResponse({"status": 200, "data": {"customer": found}})

    async def invoices(request: Request) -> Response:
        customer_id = request.query_params.get("customer_id")
        if not customer_id:
            return _error(400, "INV_400_QUERY", "customer_id is required")
        status = request.query_params.get("status")
        if status not in (None, "", "open", "paid"):
            return _error(400, "INV_400_STATUS", "status must be open or paid")
        return JSONResponse(store.invoices(customer_id, status))

    async def payments(request: Request) -> Response:
        key = request.headers.get("idempotency-key", "").strip()
        if not key:
            return _error(400, "PAY_400_NO_KEY", "the Idempotency-Key header is required")
        if len(key) > 255:
            return _error(400, "PAY_400_KEY", "the Idempotency-Key is longer than 255 characters")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "PAY_400_BODY", "the body is not JSON")
        fields = ("customer_id", "invoice_id", "amount", "payment_method_id")
        if not isinstance(body, dict) or any(body.get(f) is None for f in fields):
            return _error(400, "PAY_400_BODY", "give " + ", ".join(fields))
        strings = (body["customer_id"], body["invoice_id"], body["payment_method_id"])
        if not all(isinstance(s, str) and s for s in strings):
            return _error(400, "PAY_400_BODY", "ids must be non-empty strings")
        if body.get("confirm") not in (None, "sync", "async"):
            return _error(400, "PAY_400_CONFIRM", "confirm must be sync or async")
        status, answer, replayed = store.pay(key, body)
        if status == 202 and not replayed:
            task = asyncio.get_running_loop().create_task(settle_later(answer["payment_id"]))
            settling.add(task)
            task.add_done_callback(settling.discard)
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        return JSONResponse(answer, status_code=status, headers=headers)

    async def payment(request: Request) -> Response:
        found = store.async_payment(request.path_params["payment_id"])
        if found is None:
            return _error(404, "PAY_404", "payment not found")
        return JSONResponse(found)

    async def webhooks(request: Request) -> Response:
        if sender is None:
            return JSONResponse({"url": None, "deliveries": []})
        return JSONResponse({"url": sender.url, "deliveries": sender.deliveries})

    async def ledger(request: Request) -> Response:
        return JSONResponse(store.ledger())

    async def reset(request: Request) -> Response:
        store.reset()
        if sender is not None:
            sender.deliveries.clear()
        return JSONResponse({"reset": True})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return _error(status, f"HTTP_{status}", "no such endpoint or method")

    app = Starlette(
        routes=[
            Route("/customers/search", search),
            Route("/customers/{customer_id}", customer),
            Route("/invoices", invoices),
            Route("/payments", payments, methods=["POST"]),
            Route("/payments/{payment_id}", payment),
            Route("/_webhooks", webhooks),
            Route("/_ledger", ledger),
            Route("/_reset", reset, methods=["POST"]),
            Route("/_health", health),
        ],
        exception_handlers={404: http_error, 405: http_error},
    )
    app.add_middleware(KeyAndCount, store=store, api_key=api_key)
    app.state.store = store
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the billing API with uvicorn on loopback."""
    parser = argparse.ArgumentParser(description="The reference billing API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8042)
    parser.add_argument("--db", default=":memory:", help="SQLite file, or :memory:")
    parser.add_argument("--api-key", default=os.environ.get("BILLING_API_KEY", "demo-key"))
    parser.add_argument("--fd", type=int, help="serve on this inherited listening socket")
    parser.add_argument("--webhook-url", help="send payment.succeeded events here")
    parser.add_argument("--webhook-delay", type=float, default=0.5, help="seconds to clear")
    parser.add_argument("--webhook-attempts", type=int, default=5)
    parser.add_argument("--webhook-backoff", type=float, default=0.5, help="first retry wait")
    args = parser.parse_args(argv)
    # The secret comes from the environment only: a command line is visible to every local user.
    secret = os.environ.get("BILLING_WEBHOOK_SECRET")
    try:
        app = create_app(
            args.db,
            args.api_key,
            webhook_url=args.webhook_url,
            webhook_secret=secret,
            webhook_delay_s=args.webhook_delay,
            webhook_attempts=args.webhook_attempts,
            webhook_backoff_s=args.webhook_backoff,
        )
    except ValueError as exc:
        parser.error(str(exc))
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    # An inherited socket lets a parent pick the port race-free; socket(fileno=) detects the
    # family itself, where uvicorn's own --fd assumes a Unix socket.
    sockets = None if args.fd is None else [socket.socket(fileno=args.fd)]
    server.run(sockets=sockets)


if __name__ == "__main__":
    main()
