"""`patchbay import graphql`: SDL and introspection schemas, named operations as tools, what is
skipped and why, output that validates as it is, and the newcomer's path to a working call."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from graphql import build_schema, introspection_from_schema

from patchbay.importers import UnreadableSpec
from patchbay.importers._graphql import import_graphql, load_graphql
from patchbay.spec import load_config_text, parameters_schema

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "graphql_billing"
ENDPOINT = "http://127.0.0.1:8044/graphql"
BASE_ENV = {k: os.environ[k] for k in ("HOME", "PATH") if k in os.environ}

EXTRA_OPS = textwrap.dedent(
    """
    query { customer(id: "cus_1") { id } }

    query Broken($id: ID!) { customer(id: $id) { nope } }

    query ByDate($due: Date!, $statuses: [InvoiceStatus!], $pay: [PaymentInput!]) {
      due(date: $due, statuses: $statuses, pay: $pay) { id }
    }
    """
)


def _import(tmp_path: Path, schema: Path, ops: str, **kw: Any) -> Any:
    (tmp_path / "ops.graphql").write_text(ops)
    return import_graphql(load_graphql(schema, tmp_path / "ops.graphql"), ENDPOINT, **kw)


def _example_ops() -> str:
    return (EXAMPLE / "operations.graphql").read_text()


def _validated(text: str) -> Any:
    return load_config_text(text, env={})


def test_operations_become_tools_with_their_variables(tmp_path: Path) -> None:
    result = _import(tmp_path, EXAMPLE / "schema.graphql", _example_ops(), integration="billing")
    config = _validated(result.to_yaml())
    assert sorted(config.tools) == ["create_payment", "customer_by_phone", "customer_invoices"]
    assert config.integrations["billing"].kind == "graphql"
    assert config.integrations["billing"].base_url == ENDPOINT  # ${BILLING_URL:-...}
    assert result.env == ["BILLING_URL"]

    find = config.tools["customer_by_phone"]
    assert find.description == "Find a customer by phone number, with their open invoices."
    assert find.graphql is not None and find.graphql.operation == "CustomerByPhone"
    assert "fragment InvoiceFields on Invoice" in find.graphql.query  # fragments travel along
    assert "subscription" not in find.graphql.query
    assert find.graphql.variables == {"phone": "{args.phone}"}
    assert find.response.root == "customerByPhone"
    assert not find.is_write
    schema = parameters_schema(find)
    assert schema["required"] == ["phone"]
    # the argument's description in the schema describes the variable given to it
    assert schema["properties"]["phone"]["description"].startswith("Phone number")

    invoices = config.tools["customer_invoices"]
    props = parameters_schema(invoices)["properties"]
    assert props["status"]["enum"] == ["OPEN", "PAID", "VOID"]
    assert props["status"]["default"] == "OPEN"
    assert props["first"]["type"] == "integer"
    assert parameters_schema(invoices)["required"] == ["customerId"]

    pay = config.tools["create_payment"]
    assert pay.is_write
    assert pay.graphql is not None
    # the input object is flattened into parameters and rebuilt in the variables
    assert pay.graphql.variables["input"] == {
        "customerId": "{args.customerId}",
        "invoiceId": "{args.invoiceId}",
        "amount": "{args.amount}",
        "paymentMethodId": "{args.paymentMethodId}",
        "note": "{args.note}",
    }
    required = parameters_schema(pay)["required"]
    assert required == ["customerId", "invoiceId", "amount", "paymentMethodId"]
    # the operation takes an idempotency key: the same one goes in the variable and the header
    assert pay.idempotency is not None
    assert pay.idempotency.key == "{call.id}_create_payment_{args.customerId}_{args.invoiceId}"
    assert pay.graphql.variables["idempotencyKey"] == pay.idempotency.key
    assert "idempotencyKey" not in pay.parameters


def test_introspection_json_gives_the_same_tools(tmp_path: Path) -> None:
    sdl = build_schema((EXAMPLE / "schema.graphql").read_text())
    for wrapped in (True, False):
        data = introspection_from_schema(sdl)
        path = tmp_path / "introspection.json"
        path.write_text(json.dumps({"data": data} if wrapped else data))
        from_json = _import(tmp_path, path, _example_ops(), integration="billing")
        from_sdl = _import(
            tmp_path, EXAMPLE / "schema.graphql", _example_ops(), integration="billing"
        )
        assert from_json.config == from_sdl.config
        assert "(introspection JSON)" in from_json.header


def test_what_cannot_be_a_tool_is_skipped_with_a_reason(tmp_path: Path) -> None:
    schema = tmp_path / "billing.graphql"
    schema.write_text(
        (EXAMPLE / "schema.graphql").read_text()
        + "extend type Query { due(date: Date!, statuses: [InvoiceStatus!], "
        "pay: [PaymentInput!]): [Invoice!]! }\n"
    )
    result = _import(tmp_path, schema, _example_ops() + EXTRA_OPS)
    assert result.integration == "billing"  # named after the schema file
    reasons = {s.what: s.reason for s in result.skipped}
    assert "streams events" in reasons["subscription PaymentEvents"]
    line = _example_ops().count("\n") + 2  # EXTRA_OPS starts with an empty line
    assert "needs a name" in reasons[f"anonymous query at line {line}"]
    assert "Cannot query field 'nope'" in reasons["query Broken"]
    assert len(result.skipped) == 3
    config = _validated(result.to_yaml())
    by_date = config.tools["by_date"]
    props = parameters_schema(by_date)["properties"]
    assert props["due"]["type"] == "string"
    assert "Date" in props["due"]["description"]  # custom scalar: sent as text, named
    assert props["statuses"] == {
        "type": "array",
        "items": {"type": "string", "enum": ["OPEN", "PAID", "VOID"]},
    }
    assert props["pay"]["items"] == {"type": "object"}
    assert "PaymentInput with fields: customerId (ID, required)" in props["pay"]["description"]
    notes = " ".join(result.comments[("tools", "by_date")])
    assert "custom scalar Date" in notes


def test_include_and_exclude_select_operations(tmp_path: Path) -> None:
    schema = EXAMPLE / "schema.graphql"
    only = _import(tmp_path, schema, _example_ops(), include=["Customer*"])
    assert sorted(only.config["tools"]) == ["customer_by_phone", "customer_invoices"]
    reads = _import(tmp_path, schema, _example_ops(), exclude=["mutation"])
    assert "create_payment" not in reads.config["tools"]
    by_field = _import(tmp_path, schema, _example_ops(), include=["createPayment"])
    assert list(by_field.config["tools"]) == ["create_payment"]
    # excluded operations are not skips: nothing is reported for them
    assert [s.what for s in by_field.skipped] == []


def test_deep_input_objects_flatten_then_stay_free_form(tmp_path: Path) -> None:
    schema = tmp_path / "deep.graphql"
    schema.write_text(
        textwrap.dedent(
            """
            input D { x: Int! }
            input C { d: D! }
            input B { c: C!, label: String = "x" }
            input A { b: B!, id: ID! }
            type Query { ok: Boolean }
            type Mutation { go(a: A!): Boolean }
            """
        )
    )
    result = _import(tmp_path, schema, "mutation Go($a: A!) { go(a: $a) }")
    config = _validated(result.to_yaml())
    go = config.tools["go"]
    assert go.graphql is not None
    assert go.graphql.variables == {
        "a": {"b": {"c": {"d": "{args.a_b_c_d}"}, "label": "{args.label}"}, "id": "{args.id}"}
    }
    assert go.parameters["a_b_c_d"].type == "object"
    assert not go.is_required("label")
    assert go.is_required("id")
    assert any("nested too deep" in n for n in result.comments[("tools", "go")])


@pytest.mark.parametrize(
    ("schema", "ops", "words"),
    [
        ("type Query {", "query A { a }", "is not GraphQL SDL"),
        ('{"data": {}}', "query A { a }", "without __schema"),
        ("type Query { a: Int }", "query A { a ", "is not a GraphQL document"),
        ("type Query { a: Int }", "fragment F on Query { a }", "defines no operation"),
    ],
)
def test_unreadable_inputs_are_refused(tmp_path: Path, schema: str, ops: str, words: str) -> None:
    (tmp_path / "s.graphql").write_text(schema)
    (tmp_path / "o.graphql").write_text(ops)
    with pytest.raises(UnreadableSpec, match=words):
        load_graphql(tmp_path / "s.graphql", tmp_path / "o.graphql")


def patchbay(
    folder: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "patchbay.cli", *argv],
        cwd=folder,
        env={**BASE_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_exit_codes(tmp_path: Path) -> None:
    args = ["import", "graphql", "--schema", str(EXAMPLE / "schema.graphql")]
    missing = patchbay(tmp_path, *args, "--operations", "nope.graphql", "--endpoint", ENDPOINT)
    assert missing.returncode == 2
    assert "cannot read operations nope.graphql" in missing.stderr
    ops = str(EXAMPLE / "operations.graphql")
    relative = patchbay(tmp_path, *args, "--operations", ops, "--endpoint", "/graphql")
    assert relative.returncode == 2
    assert "--endpoint" in relative.stderr
    done = patchbay(tmp_path, *args, "--operations", ops, "--endpoint", ENDPOINT)
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["integrations"]["graphql"]["kind"] == "graphql"
    assert "skipped: subscription PaymentEvents: a subscription streams events" in done.stderr
    assert "3 tools, 1 skipped" in done.stderr


def _service() -> ModuleType:
    spec = importlib.util.spec_from_file_location("graphql_billing_cli", EXAMPLE / "service.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def server() -> Iterator[Any]:
    with _service().GraphQLBilling() as running:
        yield running


def test_import_validate_then_call(tmp_path: Path, server: Any) -> None:
    done = patchbay(
        tmp_path, "import", "graphql", "--schema", str(EXAMPLE / "schema.graphql"),
        "--operations", str(EXAMPLE / "operations.graphql"), "--endpoint", server.url,
        "--integration", "billing", "-o", "patchbay.yaml",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "then run: patchbay validate -c patchbay.yaml" in done.stderr
    checked = patchbay(tmp_path, "validate")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "ok: 1 integrations, 3 tools"
    found = patchbay(tmp_path, "call", "customer_by_phone", "--args", '{"phone": "+15551234567"}')
    answer = json.loads(found.stdout)
    assert answer["ok"] is True, answer
    assert answer["result"]["name"] == "Jamie Patel"
    missing = patchbay(tmp_path, "call", "customer_by_phone", "--args", '{"phone": "+1555"}')
    assert json.loads(missing.stdout)["error"]["code"] == "not_found"
    pay = {"customerId": "cus_8F2kLq", "invoiceId": "inv_1001", "amount": 24700,
           "paymentMethodId": "pm_card_visa4242"}  # fmt: skip
    paid = patchbay(tmp_path, "call", "create_payment", "--args", json.dumps(pay))
    result = json.loads(paid.stdout)
    assert result["ok"] is True, result
    assert result["result"]["confirmationNumber"].startswith("PAY-")
    assert server.data.charges == 1
