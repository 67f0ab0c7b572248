"""The reference billing API honours every documented behaviour, over real HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from patchbay.testing import BillingServer

JAMIE = "cus_8F2kLq"
MORGAN = "cus_3Hd9Wm"


def payment(
    amount: int = 24700, invoice_id: str = "inv_1001", customer_id: str = JAMIE
) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "invoice_id": invoice_id,
        "amount": amount,
        "payment_method_id": "pm_card_visa4242",
    }


async def pay(
    api: aiohttp.ClientSession, body: dict[str, Any], key: str | None = "key-1"
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    headers = {} if key is None else {"Idempotency-Key": key}
    async with api.post("/payments", json=body, headers=headers) as answer:
        return answer.status, await answer.json(), answer


async def get(api: aiohttp.ClientSession, path: str, **params: str) -> tuple[int, Any]:
    async with api.get(path, params=params) as answer:
        return answer.status, await answer.json()


# --- GET /customers/search and GET /customers/{id} ---


async def test_search_by_phone_answers_the_article_shape(api: aiohttp.ClientSession) -> None:
    status, body = await get(api, "/customers/search", phone="+15551234567")
    assert status == 200
    assert body["status"] == 200
    customer = body["data"]["customer"]
    assert customer["id"] == JAMIE
    assert customer["name"] == "Jamie Patel"
    assert customer["phone"] == "+15551234567"
    assert customer["email"] == "jamie.patel@example.com"
    assert (customer["status"], customer["tier"]) == ("active", "premium")
    assert customer["internal_flags"] == ["vip_watch"]
    assert customer["created_at"]
    assert customer["default_payment_method_id"] == "pm_card_visa4242"


@pytest.mark.parametrize("phone", ["555-123-4567", "(555) 123 4567", "15551234567", " 15551234567"])
async def test_search_accepts_phone_as_callers_say_it(
    api: aiohttp.ClientSession, phone: str
) -> None:
    status, body = await get(api, "/customers/search", phone=phone)
    assert status == 200
    assert body["data"]["customer"]["id"] == JAMIE


async def test_search_by_email_ignores_case(api: aiohttp.ClientSession) -> None:
    status, body = await get(api, "/customers/search", email="Jamie.Patel@Example.com")
    assert status == 200
    assert body["data"]["customer"]["id"] == JAMIE


async def test_search_unknown_is_cs_404(api: aiohttp.ClientSession) -> None:
    status, body = await get(api, "/customers/search", phone="+15550009999")
    assert (status, body["code"]) == (404, "CS_404")
    assert body["error"] == "customer not found"


async def test_search_without_phone_or_email_is_400(api: aiohttp.ClientSession) -> None:
    status, body = await get(api, "/customers/search")
    assert status == 400
    assert body["code"] == "CS_400_QUERY"


async def test_customer_by_id_has_the_same_shape(api: aiohttp.ClientSession) -> None:
    _, searched = await get(api, "/customers/search", email="jamie.patel@example.com")
    status, body = await get(api, f"/customers/{JAMIE}")
    assert status == 200
    assert body == searched


async def test_customer_by_unknown_id_is_cs_404(api: aiohttp.ClientSession) -> None:
    status, body = await get(api, "/customers/cus_nobody")
    assert (status, body["code"]) == (404, "CS_404")


# --- GET /invoices ---


async def test_jamie_has_one_open_invoice(api: aiohttp.ClientSession) -> None:
    status, body = await get(api, "/invoices", customer_id=JAMIE, status="open")
    assert status == 200
    assert body == [
        {
            "id": "inv_1001",
            "customer_id": JAMIE,
            "amount": 24700,
            "amount_due": 24700,
            "due_date": "2026-03-01",
            "status": "open",
        }
    ]


async def test_invoices_without_status_include_paid_ones(api: aiohttp.ClientSession) -> None:
    _, body = await get(api, "/invoices", customer_id=JAMIE)
    assert {(i["id"], i["status"]) for i in body} == {("inv_1001", "open"), ("inv_0987", "paid")}


async def test_morgan_has_twelve_open_invoices_oldest_first(api: aiohttp.ClientSession) -> None:
    _, body = await get(api, "/invoices", customer_id=MORGAN, status="open")
    assert len(body) == 12
    assert [i["due_date"] for i in body] == sorted(i["due_date"] for i in body)
    assert all(isinstance(i["amount"], int) and i["amount"] > 0 for i in body)


async def test_invoices_of_unknown_customer_is_empty(api: aiohttp.ClientSession) -> None:
    assert await get(api, "/invoices", customer_id="cus_nobody", status="open") == (200, [])


async def test_invoices_need_a_customer_and_a_known_status(api: aiohttp.ClientSession) -> None:
    assert (await get(api, "/invoices"))[1]["code"] == "INV_400_QUERY"
    status, body = await get(api, "/invoices", customer_id=JAMIE, status="late")
    assert (status, body["code"]) == (400, "INV_400_STATUS")


# --- POST /payments ---


async def test_payment_completes_and_marks_the_invoice_paid(
    api: aiohttp.ClientSession, billing: BillingServer
) -> None:
    status, body, _ = await pay(api, payment())
    assert status == 201
    assert body["status"] == "completed"
    assert body["confirmation_number"].startswith("PAY-")
    assert (body["invoice_id"], body["amount"]) == ("inv_1001", 24700)
    assert await get(api, "/invoices", customer_id=JAMIE, status="open") == (200, [])
    ledger = await billing.ledger()
    assert ledger["charges_by_invoice"] == {"inv_1001": 1}
    assert ledger["amount_by_invoice"] == {"inv_1001": 24700}


async def test_same_key_replays_the_same_answer_and_charges_nothing(
    api: aiohttp.ClientSession, billing: BillingServer
) -> None:
    first = await pay(api, payment())
    again = await pay(api, payment())
    assert again[:2] == first[:2]
    assert again[2].headers.get("Idempotent-Replayed") == "true"
    ledger = await billing.ledger()
    assert ledger["charges_by_invoice"] == {"inv_1001": 1}
    assert len(ledger["payments"]) == 1


async def test_same_key_with_another_body_is_409(
    api: aiohttp.ClientSession, billing: BillingServer
) -> None:
    await pay(api, payment(amount=100))
    status, body, _ = await pay(api, payment(amount=200))
    assert (status, body["code"]) == (409, "PAY_409_KEY_REUSE")
    assert (await billing.ledger())["amount_by_invoice"] == {"inv_1001": 100}


@pytest.mark.parametrize("amount", [0, -5, 24701, "100", 12.5, True])
async def test_bad_amount_is_422(
    api: aiohttp.ClientSession, billing: BillingServer, amount: Any
) -> None:
    status, body, _ = await pay(api, payment(amount=amount))
    assert (status, body["code"]) == (422, "PAY_422_AMOUNT")
    assert (await billing.ledger())["payments"] == []


async def test_a_refused_key_can_be_used_again_with_a_fixed_body(
    api: aiohttp.ClientSession,
) -> None:
    assert (await pay(api, payment(amount=99999)))[0] == 422
    assert (await pay(api, payment()))[0] == 201


async def test_partial_payments_leave_the_invoice_open_until_paid(
    api: aiohttp.ClientSession,
) -> None:
    assert (await pay(api, payment(amount=10000), key="a"))[0] == 201
    _, (invoice,) = await get(api, "/invoices", customer_id=JAMIE, status="open")
    assert (invoice["amount"], invoice["amount_due"]) == (24700, 14700)
    assert (await pay(api, payment(amount=14701), key="b"))[0] == 422
    assert (await pay(api, payment(amount=14700), key="c"))[0] == 201
    assert (await pay(api, payment(amount=1), key="d"))[0] == 422  # nothing left to pay


async def test_paying_a_paid_invoice_is_422(api: aiohttp.ClientSession) -> None:
    status, body, _ = await pay(api, payment(amount=100, invoice_id="inv_0987"))
    assert (status, body["code"]) == (422, "PAY_422_AMOUNT")


@pytest.mark.parametrize(("invoice_id", "customer_id"), [("inv_nope", JAMIE), ("inv_2001", JAMIE)])
async def test_unknown_invoice_is_inv_404(
    api: aiohttp.ClientSession, invoice_id: str, customer_id: str
) -> None:
    status, body, _ = await pay(api, payment(invoice_id=invoice_id, customer_id=customer_id))
    assert (status, body["code"]) == (404, "INV_404")


async def test_payment_without_key_is_400(
    api: aiohttp.ClientSession, billing: BillingServer
) -> None:
    status, body, _ = await pay(api, payment(), key=None)
    assert (status, body["code"]) == (400, "PAY_400_NO_KEY")
    assert (await billing.ledger())["payments"] == []


async def test_payment_with_a_malformed_body_is_400(api: aiohttp.ClientSession) -> None:
    async with api.post("/payments", data=b"{not json", headers={"Idempotency-Key": "k"}) as a:
        assert (a.status, (await a.json())["code"]) == (400, "PAY_400_BODY")
    body = payment()
    del body["payment_method_id"]
    status, answer, _ = await pay(api, body)
    assert (status, answer["code"]) == (400, "PAY_400_BODY")


async def test_concurrent_duplicates_with_one_key_charge_once(
    api: aiohttp.ClientSession, billing: BillingServer
) -> None:
    answers = await asyncio.gather(*(pay(api, payment(), key="dup") for _ in range(40)))
    assert {(status, body["confirmation_number"]) for status, body, _ in answers} == {
        (201, answers[0][1]["confirmation_number"])
    }
    assert (await billing.ledger())["charges_by_invoice"] == {"inv_1001": 1}


async def test_concurrent_payments_with_different_keys_never_overpay(
    api: aiohttp.ClientSession, billing: BillingServer
) -> None:
    answers = await asyncio.gather(*(pay(api, payment(), key=f"k{n}") for n in range(20)))
    assert sorted(status for status, _, _ in answers) == [201] + [422] * 19
    assert (await billing.ledger())["amount_by_invoice"] == {"inv_1001": 24700}


# --- auth, ledger, the server helper ---


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/customers/search?phone=%2B15551234567"),
        ("GET", f"/customers/{JAMIE}"),
        ("GET", f"/invoices?customer_id={JAMIE}&status=open"),
        ("POST", "/payments"),
        ("GET", "/_ledger"),
        ("POST", "/_reset"),
    ],
)
@pytest.mark.parametrize("key", [None, "wrong-key"])
async def test_every_endpoint_needs_the_api_key(
    billing: BillingServer, method: str, path: str, key: str | None
) -> None:
    headers = {"Idempotency-Key": "k"} | ({} if key is None else {"X-API-Key": key})
    async with (
        aiohttp.ClientSession() as client,
        client.request(method, billing.url + path, json=payment(), headers=headers) as answer,
    ):
        assert answer.status == 401
        assert (await answer.json())["code"] == "AUTH_401"
    assert (await billing.ledger())["payments"] == []


async def test_unknown_route_is_a_json_404(api: aiohttp.ClientSession) -> None:
    status, body = await get(api, "/refunds")
    assert (status, body["code"]) == (404, "HTTP_404")


async def test_ledger_counts_requests_and_reset_restores_the_seed(
    api: aiohttp.ClientSession, billing: BillingServer
) -> None:
    await get(api, f"/customers/{JAMIE}")
    await pay(api, payment())
    ledger = await billing.ledger()
    assert ledger["requests"] == 2
    assert ledger["requests_by_path"] == {f"GET /customers/{JAMIE}": 1, "POST /payments": 1}
    await billing.reset()
    ledger = await billing.ledger()
    assert (ledger["requests"], ledger["payments"]) == (0, [])
    assert len((await get(api, "/invoices", customer_id=JAMIE, status="open"))[1]) == 1


async def test_subprocess_server_charges_once_under_concurrent_duplicates() -> None:
    async with BillingServer(api_key="sub-key") as server:
        assert not server.in_process
        async with aiohttp.ClientSession(base_url=server.url, headers=server.headers) as api:
            answers = await asyncio.gather(*(pay(api, payment(), key="dup") for _ in range(30)))
        assert {status for status, _, _ in answers} == {201}
        assert len({body["confirmation_number"] for _, body, _ in answers}) == 1
        assert (await server.ledger())["charges_by_invoice"] == {"inv_1001": 1}
    assert not server.running


def test_a_database_file_keeps_payments_across_restarts(tmp_path: Path) -> None:
    db = str(tmp_path / "billing.sqlite3")
    with BillingServer(db_path=db) as server:
        asyncio.run(_pay_once(server))
    with BillingServer(db_path=db) as server:
        ledger = asyncio.run(server.ledger())
    assert ledger["charges_by_invoice"] == {"inv_1001": 1}


async def _pay_once(server: BillingServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url, headers=server.headers) as api:
        assert (await pay(api, payment()))[0] == 201


def test_server_helper_reports_its_state(tmp_path: Path) -> None:
    server = BillingServer(in_process=True)
    with pytest.raises(RuntimeError):
        _ = server.url
    server.start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert "thread" in repr(server)
    finally:
        server.stop()
    server.stop()  # twice is fine
    with pytest.raises(FileNotFoundError):
        BillingServer(service_path=tmp_path / "missing.py")
