"""MockApi as a user runs it: a runtime pointed at the mock, raw HTTP for auth, keys and faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from patchbay import CallContext, ToolRuntime
from patchbay.spec import Config, load_config, load_config_text
from patchbay.testing import Fault, MockApi

ROOT = Path(__file__).resolve().parents[2]
BILLING = ROOT / "examples" / "billing" / "patchbay.yaml"
KEY = {"X-API-Key": "any-key"}


def _pointed_at(cfg: Config, mock: MockApi) -> Config:
    """The config with every integration's base URL replaced by the mock's."""
    integrations = {
        name: integ.model_copy(update={"base_url": mock.url_for(name)})
        for name, integ in cfg.integrations.items()
    }
    return cfg.model_copy(update={"integrations": integrations})


@pytest.fixture
def billing_cfg(monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.delenv("BILLING_API_KEY", raising=False)  # unresolved: any key is accepted
    monkeypatch.delenv("PATCHBAY_STATE", raising=False)
    return load_config(BILLING)


@pytest.fixture
async def mock(billing_cfg: Config) -> AsyncIterator[MockApi]:
    async with MockApi(billing_cfg) as running:
        yield running


@pytest.fixture
async def http(mock: MockApi) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=mock.url_for("billing")) as session:
        yield session


async def test_a_runtime_runs_the_billing_conversation_against_the_mock(
    billing_cfg: Config, mock: MockApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BILLING_API_KEY", "whatever-the-mock-is-given")
    call = CallContext(id="t-1", caller="+15551234567")
    async with ToolRuntime(_pointed_at(billing_cfg, mock)) as runtime:
        found = await runtime.call_tool("lookup_customer_invoices", {"phone": "555-123-4567"}, call)
        assert found.ok, found.to_dict()
        assert found.result["customer_name"] == "Jamie Patel"
        assert found.result["invoice_count"] == 1
        assert found.result["invoices"][0] == {
            "invoice_id": "inv_1001",
            "amount": 24700,
            "due_date": "2026-03-01",
        }
        paid = await runtime.call_tool(
            "create_payment",
            {"invoice_id": "inv_1001", "amount": 24700, "payment_method_id": "pm_card_visa4242"},
            call,
        )
        assert paid.ok, paid.to_dict()
        assert paid.result["success"] is True
        assert paid.result["confirmation_number"] == "PAY-7F3A9C21D0"
        customer = await runtime.call_tool("get_customer", {"customer_id": "cus_8F2kLq"}, call)
        assert customer.result == {
            "customer_name": "Jamie Patel",
            "status": "active",
            "account_tier": "premium",
        }
        # An example keyed by other arguments answers those: the tool's words for CS_404.
        missing = await runtime.call_tool("get_customer", {"customer_id": "cus_unknown"}, call)
        assert missing.error is not None and missing.error.code == "not_found"
        assert missing.error.message == "customer not found"


async def test_a_missing_key_is_a_401(http: aiohttp.ClientSession) -> None:
    async with http.get("/customers/cus_8F2kLq") as answer:
        assert answer.status == 401
        body = await answer.json()
    assert body["code"] == "MOCK_401" and "X-API-Key" in body["error"]
    async with http.get("/customers/cus_8F2kLq", headers=KEY) as answer:
        assert answer.status == 200


async def test_a_resolved_secret_must_match(
    billing_cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BILLING_API_KEY", "right-key")
    async with (
        MockApi(billing_cfg) as mock,
        aiohttp.ClientSession(base_url=mock.url) as http,
    ):
        async with http.get("/invoices", headers={"X-API-Key": "wrong-key"}) as answer:
            assert answer.status == 401
            assert "invalid credentials" in (await answer.json())["error"]
        async with http.get("/invoices", headers={"X-API-Key": "right-key"}) as answer:
            assert answer.status == 200


async def test_the_same_idempotency_key_gets_the_same_answer(
    http: aiohttp.ClientSession,
) -> None:
    body = {"customer_id": "cus_8F2kLq", "invoice_id": "inv_1001", "amount": 24700,
            "payment_method_id": "pm_card_visa4242"}  # fmt: skip
    headers = {**KEY, "Idempotency-Key": "k-1"}
    async with http.post("/payments", json=body, headers=headers) as first:
        assert first.status == 201
        one = await first.json()
        assert "Idempotent-Replayed" not in first.headers
    async with http.post("/payments", json=body, headers=headers) as again:
        assert again.status == 201 and await again.json() == one
        assert again.headers["Idempotent-Replayed"] == "true"
    other = {**body, "invoice_id": "inv_9999"}
    async with http.post("/payments", json=other, headers=headers) as reused:
        assert reused.status == 409
    async with http.post("/payments", json=other, headers={**KEY, "Idempotency-Key": "k-2"}) as a:
        assert a.status == 404 and (await a.json())["code"] == "INV_404"


async def test_faults_through_the_control_endpoint(
    billing_cfg: Config, mock: MockApi, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BILLING_API_KEY", "any-key")
    faults = {"faults": [{"status": 500, "times": 1, "path_prefix": "/payments"}]}
    async with http.post("/__patchbay/faults", json=faults) as answer:
        assert answer.status == 200 and await answer.json() == {"faults": 1}
    call = CallContext(id="t-2", state={"customer_id": "cus_8F2kLq", "open_invoice_amount": 24700})
    args = {"invoice_id": "inv_1001", "amount": 24700, "payment_method_id": "pm_card_visa4242"}
    async with ToolRuntime(_pointed_at(billing_cfg, mock)) as runtime:
        paid = await runtime.call_tool("create_payment", args, call)
        assert paid.ok, paid.to_dict()
        assert paid.meta["attempts"] == 2  # the 500, then the retry with the same key
        async with http.post("/__patchbay/faults", json={"faults": [{"status": 503}]}) as answer:
            assert answer.status == 200
        down = await runtime.call_tool("get_customer", {"customer_id": "cus_8F2kLq"}, call)
        assert down.error is not None and down.error.code == "upstream_unavailable"
        async with http.delete("/__patchbay/faults") as answer:
            assert answer.status == 200
        up = await runtime.call_tool("get_customer", {"customer_id": "cus_8F2kLq"}, call)
        assert up.ok, up.to_dict()


@pytest.mark.parametrize(
    "payload",
    [{"faults": [{"kind": "explode"}]}, {"faults": {"status": 500}}, {"status": 500}, "nope"],
)
async def test_bad_faults_are_refused_and_change_nothing(
    http: aiohttp.ClientSession, payload: Any
) -> None:
    async with http.post("/__patchbay/faults", json=payload) as answer:
        assert answer.status == 400
        assert (await answer.json())["error"].startswith("bad faults:")
    async with http.get("/invoices", headers=KEY) as answer:
        assert answer.status == 200


async def test_a_lost_answer_is_replayed_for_the_same_key(
    mock: MockApi, http: aiohttp.ClientSession
) -> None:
    mock.add_fault(Fault("lose_response", times=1))
    body = {"customer_id": "cus_8F2kLq", "invoice_id": "inv_1001", "amount": 24700,
            "payment_method_id": "pm_card_visa4242"}  # fmt: skip
    headers = {**KEY, "Idempotency-Key": "k-lost"}
    with pytest.raises(aiohttp.ClientError):
        async with http.post("/payments", json=body, headers=headers) as answer:
            await answer.read()
    async with http.post("/payments", json=body, headers=headers) as answer:
        assert answer.status == 201 and answer.headers["Idempotent-Replayed"] == "true"


async def test_undeclared_operations_are_404_and_wrong_methods_405(
    http: aiohttp.ClientSession,
) -> None:
    async with http.get("/admin/users", headers=KEY) as answer:
        assert answer.status == 404 and (await answer.json())["code"] == "MOCK_404"
    async with http.delete("/payments", headers=KEY) as answer:
        assert answer.status == 405


APPOINTMENTS = """
version: 1
integrations:
  clinic:
    base_url: http://clinic.invalid
    auth: {type: bearer, secret: env:CLINIC_TOKEN_FOR_MOCK_TEST}
    version: {path_prefix: /v2}
tools:
  find_slots:
    integration: clinic
    description: Find free appointment slots on a day.
    parameters:
      day: {type: string, format: date}
    request: {method: GET, path: /slots, query: {day: "{args.day}"}}
    response:
      root: result
      summarize: {path: slots, top: 3}
  book_appointment:
    integration: clinic
    description: Book a slot for the caller.
    parameters:
      slot_id: {type: string}
      name: {type: string}
    request:
      method: POST
      path: /appointments
      body: {slot: "{args.slot_id}", patient: {name: "{args.name}"}}
    idempotency: {key: "book_{call.id}_{args.slot_id}"}
    response:
      root: data.appointment
      fields: {booked: "state == 'confirmed'", appointment_id: id, slot_id: slot_id, name: name}
  cancel_appointment:
    integration: clinic
    description: Cancel an appointment.
    parameters:
      appointment_id: {type: string}
    request: {method: DELETE, path: "/appointments/{appointment_id}"}
"""


async def test_an_api_without_examples_gets_minimal_bodies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLINIC_TOKEN_FOR_MOCK_TEST", raising=False)
    cfg = load_config_text(APPOINTMENTS, base_dir=tmp_path)
    async with MockApi(cfg) as mock:
        monkeypatch.setenv("CLINIC_TOKEN_FOR_MOCK_TEST", "t0ken")
        call = CallContext(id="c-9")
        async with ToolRuntime(_pointed_at(cfg, mock)) as runtime:
            booked = await runtime.call_tool(
                "book_appointment", {"slot_id": "s_42", "name": "Ana"}, call
            )
            assert booked.ok, booked.to_dict()
            assert booked.result["booked"] is True
            assert booked.result["slot_id"] == "s_42" and booked.result["name"] == "Ana"
            assert booked.result["appointment_id"].startswith("appointment_id_")
            again = await runtime.call_tool(
                "book_appointment", {"slot_id": "s_42", "name": "Ana"}, CallContext(id="c-10")
            )
            assert again.result["appointment_id"] != booked.result["appointment_id"]
            slots = await runtime.call_tool("find_slots", {"day": "2026-05-04"}, call)
            assert slots.ok, slots.to_dict()
            cancelled = await runtime.call_tool(
                "cancel_appointment", {"appointment_id": "a_1"}, call
            )
            assert cancelled.ok, cancelled.to_dict()
            assert cancelled.result == {"appointment_id": "a_1"}
        async with aiohttp.ClientSession() as http:
            async with http.get(mock.url + "/v2/slots") as answer:
                assert answer.status == 401  # no bearer token at all
            async with http.get(mock.url + "/slots", headers={"Authorization": "Bearer x"}) as a:
                assert a.status == 404  # without the version prefix


async def test_openapi_examples_answer_when_the_config_has_none(tmp_path: Path) -> None:
    spec = tmp_path / "openapi.yaml"
    spec.write_text(
        """
openapi: 3.0.3
info: {title: clinic, version: "1"}
paths:
  /slots:
    get:
      responses:
        "200":
          content:
            application/json:
              example: {result: {slots: [{id: s_1, at: "09:00"}, {id: s_2, at: "09:30"}]}}
  /appointments/{id}:
    delete:
      responses:
        "200":
          content:
            application/json:
              schema:
                type: object
                properties:
                  id: {type: string, example: a_77}
                  cancelled_at: {type: string, format: date-time}
"""
    )
    cfg = load_config_text(
        APPOINTMENTS.replace(
            "    auth: {type: bearer, secret: env:CLINIC_TOKEN_FOR_MOCK_TEST}\n", ""
        )
    )
    async with MockApi(cfg, openapi=spec) as mock, aiohttp.ClientSession(base_url=mock.url) as http:
        async with http.get("/v2/slots?day=2026-05-04") as answer:
            assert await answer.json() == {
                "result": {"slots": [{"id": "s_1", "at": "09:00"}, {"id": "s_2", "at": "09:30"}]}
            }
        async with http.delete("/v2/appointments/a_1") as answer:
            assert await answer.json() == {"id": "a_77", "cancelled_at": "2026-01-15T09:30:00Z"}


def test_a_bad_openapi_document_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("just: text\n")
    cfg = load_config_text(APPOINTMENTS)
    with pytest.raises(ValueError, match="not an OpenAPI document"):
        MockApi(cfg, openapi=bad)


CONTRACT = """
version: 1
integrations:
  crm:
    base_url: http://127.0.0.1:9
tools:
  get_account:
    integration: crm
    description: Fetch an account by its id.
    parameters:
      account_id: {type: string}
    request: {method: GET, path: "/accounts/{account_id}"}
    response:
      root: account
      fields: {name: name, balance: balance_cents, open: is_open}
      enforce: true
      expect:
        type: object
        required: [account]
        properties:
          account:
            type: object
            required: [account_id, name, balance_cents, is_open, plan]
            properties:
              account_id: {type: string}
              name: {type: string}
              balance_cents: {type: integer, minimum: 0}
              is_open: {type: boolean}
              plan: {enum: [basic, pro]}
"""


async def test_without_examples_the_mock_answers_what_the_response_contract_describes() -> None:
    cfg = load_config_text(CONTRACT)
    async with MockApi(cfg) as running, ToolRuntime(_pointed_at(cfg, running)) as runtime:
        found = await runtime.call_tool("get_account", {"account_id": "acc_42"}, "c-1")
        # `enforce: true`: an answer outside the contract would be an error, not a result.
        assert found.ok, found.to_dict()
        assert found.result == {"name": "string", "balance": 0, "open": True}
        async with aiohttp.ClientSession() as session:
            url = running.url_for("crm") + "/accounts/acc_7"
            async with session.get(url) as answer:
                body = await answer.json()
    assert body == {
        "account": {
            "account_id": "acc_7",  # the argument, echoed where the contract names it
            "name": "string",
            "balance_cents": 0,
            "is_open": True,
            "plan": "basic",
        }
    }
