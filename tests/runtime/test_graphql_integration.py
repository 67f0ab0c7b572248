"""`kind: graphql` integrations against a real GraphQL server (Ariadne on uvicorn): requests,
answers, GraphQL errors as error codes, partial data, and retries only where they are safe."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from patchbay import CallContext, ToolRuntime
from patchbay._errors import ConfigErrors
from patchbay.http._build import build_request
from patchbay.spec import load_config_text
from patchbay.spec._graphql import GraphQLRequest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "graphql_billing"
OPERATIONS = (EXAMPLE / "operations.graphql").read_text()
JAMIE = {"phone": "+15551234567"}
PAY = {"customerId": "cus_8F2kLq", "invoiceId": "inv_1001", "amount": 24700, "pm": "pm_visa"}


def _service() -> ModuleType:
    spec = importlib.util.spec_from_file_location("graphql_billing_service", EXAMPLE / "service.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def server() -> Iterator[Any]:
    with _service().GraphQLBilling(api_key="gql-key") as running:
        yield running


def _indented(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line if line else "" for line in text.splitlines())


CONFIG = """
version: 1
integrations:
  billing:
    kind: graphql
    base_url: ${GQL_URL}
    auth: {type: api_key, header: X-API-Key, secret: env:GQL_KEY}
    retry: {attempts: 3, backoff_s: 0.01, max_backoff_s: 0.02}
tools:
  find_customer:
    integration: billing
    description: Find a customer by phone.
    parameters: {phone: {type: string}}
    graphql:
      operation: CustomerByPhone
      variables: {phone: "{args.phone}"}
      query: |
%(ops)s
    response:
      root: customerByPhone
      fields: {name: name, balance: balance, open_invoices: invoices}
      messages: {NOT_FOUND: no customer has that number, FORBIDDEN: that account is locked}
  pay:
    integration: billing
    description: Pay an invoice.
    parameters:
      customerId: {type: string}
      invoiceId: {type: string}
      amount: {type: integer}
      pm: {type: string}
    graphql:
      operation: CreatePayment
      variables:
        input: {customerId: "{args.customerId}", invoiceId: "{args.invoiceId}",
                amount: "{args.amount}", paymentMethodId: "{args.pm}"}
      query: |
%(ops)s
    response: {root: createPayment, messages: {BAD_USER_INPUT: the amount is not valid}}
%(pay_extra)s
"""
KEYED = '    idempotency: {key: "{call.id}_pay_{args.invoiceId}"}'


def config_text(pay_extra: str = KEYED) -> str:
    return CONFIG % {"ops": _indented(OPERATIONS, 8), "pay_extra": pay_extra}


RuntimeFactory = Callable[..., ToolRuntime]


@pytest.fixture
async def make_runtime(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RuntimeFactory]:
    monkeypatch.setenv("GQL_KEY", "gql-key")  # the env: secret provider reads the process env
    made: list[ToolRuntime] = []

    async def no_sleep(_: float) -> None:
        return None

    def make(text: str | None = None, key: str = "gql-key") -> ToolRuntime:
        env = {"GQL_URL": server.url, "GQL_KEY": key}
        monkeypatch.setenv("GQL_KEY", key)
        rt = ToolRuntime(load_config_text(text or config_text(), env=env), sleep=no_sleep)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        await rt.close()


async def test_a_query_answers_with_its_rooted_data(make_runtime: RuntimeFactory) -> None:
    result = await make_runtime().call_tool("find_customer", JAMIE, "c-1")
    assert result.ok, result.to_dict()
    assert result.result["name"] == "Jamie Patel"
    assert result.result["balance"] == 24700
    assert [i["id"] for i in result.result["open_invoices"]] == ["inv_1001"]
    assert result.meta["attempts"] == 1


async def test_not_found_in_a_200_is_not_found_in_the_tools_words(
    make_runtime: RuntimeFactory,
) -> None:
    result = await make_runtime().call_tool("find_customer", {"phone": "+15559999999"}, "c-2")
    assert not result.ok
    assert result.error is not None
    assert result.error.code == "not_found"
    assert result.error.message == "no customer has that number"
    assert "No customer matches" not in result.to_json()  # upstream text never reaches the LLM


async def test_forbidden_is_unauthorized_with_its_words(make_runtime: RuntimeFactory) -> None:
    result = await make_runtime().call_tool("find_customer", {"phone": "+15550000000"}, "c-3")
    assert result.error is not None
    assert (result.error.code, result.error.message) == ("unauthorized", "that account is locked")


async def test_unauthenticated_is_unauthorized(make_runtime: RuntimeFactory) -> None:
    result = await make_runtime(key="wrong").call_tool("find_customer", JAMIE, "c-4")
    assert result.error is not None
    assert result.error.code == "unauthorized"
    assert result.meta["attempts"] == 1


async def test_bad_user_input_is_a_client_error(make_runtime: RuntimeFactory, server: Any) -> None:
    result = await make_runtime().call_tool("pay", {**PAY, "amount": 0}, "c-5")
    assert result.error is not None
    assert (result.error.code, result.error.message) == ("client_error", "the amount is not valid")
    assert server.data.charges == 0


async def test_a_paid_invoice_paid_again_is_a_conflict(
    make_runtime: RuntimeFactory, server: Any
) -> None:
    rt = make_runtime()
    first = await rt.call_tool("pay", PAY, "c-6")
    assert first.ok, first.to_dict()
    assert first.result["confirmationNumber"].startswith("PAY-")
    again = await rt.call_tool("pay", PAY, "c-7")  # another call: another key
    assert again.error is not None
    assert again.error.code == "conflict"
    assert server.data.charges == 1


async def test_partial_data_answers_and_says_what_is_missing(
    make_runtime: RuntimeFactory, server: Any
) -> None:
    server.data.ledger_down = True
    result = await make_runtime().call_tool("find_customer", JAMIE, "c-8")
    assert result.ok, result.to_dict()
    assert result.result["name"] == "Jamie Patel"
    assert "balance" not in result.result  # null is left out, never spoken as an amount
    assert result.result["incomplete"] == ["balance: The system is not answering right now."]
    assert result.meta["partial"] == [
        {"path": "customerByPhone.balance", "code": "SERVICE_UNAVAILABLE"}
    ]
    assert "ledger" not in result.to_json()


async def test_a_query_is_retried_as_a_read(make_runtime: RuntimeFactory, server: Any) -> None:
    server.data.fail_next = 2
    result = await make_runtime().call_tool("find_customer", JAMIE, "c-9")
    assert result.ok, result.to_dict()
    assert result.meta["attempts"] == 3


async def test_a_mutation_with_a_key_is_retried_and_charged_once(
    make_runtime: RuntimeFactory, server: Any
) -> None:
    server.data.fail_next = 1
    rt = make_runtime()
    result = await rt.call_tool("pay", PAY, "c-10")
    assert result.ok, result.to_dict()
    assert result.meta["attempts"] == 2
    assert result.meta["idempotency_key"] == "c-10_pay_inv_1001"
    again = await rt.call_tool("pay", PAY, "c-10")  # the same call asks again: same key
    assert again.ok
    assert again.result == result.result
    assert server.data.charges == 1


async def test_a_mutation_without_a_key_is_never_resent(
    make_runtime: RuntimeFactory, server: Any
) -> None:
    server.data.fail_next = 1
    rt = make_runtime(config_text(pay_extra=""))
    before = server.data.requests
    result = await rt.call_tool("pay", PAY, "c-11")
    assert result.error is not None
    assert result.error.code == "pending"  # a 503 after sending: its outcome is not known
    assert server.data.requests - before == 1


def test_the_request_is_graphql_over_http(server: Any) -> None:
    cfg = load_config_text(config_text(), env={"GQL_URL": server.url, "GQL_KEY": "k"})
    call = CallContext(id="c-12")
    query = build_request(cfg.tools["find_customer"], cfg.integrations["billing"], JAMIE, call)
    assert (query.method, query.url) == ("POST", server.url)  # the endpoint, no '/' added
    assert query.json == {
        "query": cfg.tools["find_customer"].graphql.query,  # type: ignore[union-attr]
        "operationName": "CustomerByPhone",
        "variables": {"phone": "+15551234567"},
    }
    assert not query.is_write and not cfg.tools["find_customer"].is_write
    pay = build_request(cfg.tools["pay"], cfg.integrations["billing"], PAY, call)
    assert pay.is_write and cfg.tools["pay"].is_write
    assert pay.json["variables"]["input"]["paymentMethodId"] == "pm_visa"
    assert pay.idempotency_key == "c-12_pay_inv_1001"
    assert pay.headers["Idempotency-Key"] == "c-12_pay_inv_1001"


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        (("    kind: graphql\n", ""), "tools.find_customer.graphql", "not a GraphQL endpoint"),
        (("operation: CustomerByPhone", "operation: Nope"), "tools.find_customer.graphql", "Nope"),
        (("operation: CustomerByPhone", "operation: PaymentEvents"), "graphql", "subscription"),
        (('{phone: "{args.phone}"}', '{phone: "{args.fone}"}'), "variables.phone", "fone"),
        (
            ("    response:\n      root: c", "    cache: {ttl_s: 5}\n    response:\n      root: c"),
            "find_customer.cache",
            "not cached",
        ),
    ],
)
def test_mistakes_are_reported_where_they_are(
    change: tuple[str, str], where: str, words: str
) -> None:
    text = config_text().replace(*change, 1)
    with pytest.raises(ConfigErrors) as caught:
        load_config_text(text, env={"GQL_URL": "http://127.0.0.1:1/graphql", "GQL_KEY": "k"})
    found = [(e.location, e.message) for e in caught.value.errors]
    assert any(where in loc and words in msg for loc, msg in found), found


def test_a_rest_request_on_a_graphql_integration_is_refused() -> None:
    text = config_text().replace(
        "  pay:\n",
        "  rest:\n    integration: billing\n    description: x\n"
        "    request: {method: GET, path: /x}\n  pay:\n",
        1,
    )
    with pytest.raises(ConfigErrors) as caught:
        load_config_text(text, env={"GQL_URL": "http://127.0.0.1:1/graphql", "GQL_KEY": "k"})
    assert any(e.location == "tools.rest.request" for e in caught.value.errors)


def test_the_operation_type_is_read_past_comments_and_strings() -> None:
    document = '# mutation Pay\nquery Pay($n: String = "mutation Pay") { a(n: $n) }'
    assert GraphQLRequest(query=document, operation="Pay").kind == "query"
    assert GraphQLRequest(query="mutation Pay{a}", operation="Pay").kind == "mutation"
    with pytest.raises(ValueError, match="defines no operation named 'Pa'"):
        GraphQLRequest(query="mutation Pay{a}", operation="Pa")
