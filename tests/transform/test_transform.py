"""Response transformation: root, fields, strip, summarize, and error codes turned into words."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from patchbay._errors import ConfigError
from patchbay.spec._model import ResponseSpec
from patchbay.transform import compiled_response, error_words, flatten, transform_response

RAW_CUSTOMER: dict[str, Any] = {
    "status": 200,
    "data": {
        "customer": {
            "id": "cus_1",
            "name": "Jamie Patel",
            "status": "active",
            "tier": "premium",
            "internal_flags": ["x"],
        }
    },
}
GET_CUSTOMER = ResponseSpec(
    root="data.customer",
    fields={"customer_name": "name", "status": "status", "account_tier": "tier"},
    messages={"CS_404": "customer not found"},
)
INVOICES: list[dict[str, Any]] = [
    {"id": f"inv_{i}", "amount": 1000 + i, "due_date": "2024-07-01", "status": "open"}
    for i in range(50)
]


def spec(**kw: Any) -> ResponseSpec:
    return ResponseSpec.model_validate(kw)


def test_the_articles_customer_example() -> None:
    assert transform_response(GET_CUSTOMER, RAW_CUSTOMER) == {
        "customer_name": "Jamie Patel",
        "status": "active",
        "account_tier": "premium",
    }


def test_missing_fields_are_omitted_not_null() -> None:
    body = copy.deepcopy(RAW_CUSTOMER)
    del body["data"]["customer"]["tier"]
    assert transform_response(GET_CUSTOMER, body) == {
        "customer_name": "Jamie Patel",
        "status": "active",
    }
    assert transform_response(GET_CUSTOMER, {"status": 200}) is None


def test_fields_take_any_jmespath_and_flatten() -> None:
    payment = spec(
        fields={
            "success": "status == 'completed'",
            "confirmation_number": "confirmation_number",
            "first_flag": "data.customer.internal_flags[0]",
            "names": "data.people[].name",
        }
    )
    body = {
        "status": "completed",
        "confirmation_number": "PAY-1",
        "data": {"customer": {"internal_flags": ["vip"]}, "people": [{"name": "A"}, {"name": "B"}]},
    }
    assert transform_response(payment, body) == {
        "success": True,
        "confirmation_number": "PAY-1",
        "first_flag": "vip",
        "names": ["A", "B"],
    }
    assert transform_response(payment, {"status": "failed"}) == {"success": False}


def test_without_root_or_fields_the_body_is_kept() -> None:
    body = {"a": [1, 2], "b": {"c": None}}
    assert transform_response(spec(), body) == body


def test_strip_removes_names_at_any_depth() -> None:
    body: dict[str, Any] = {
        "id": "cus_1",
        "name": "Jamie",
        "internal_flags": ["x"],
        "invoices": [{"id": "inv_1", "internal_flags": [], "ssn": "123"}],
        "nested": {"deeper": {"ssn": "456", "keep": 1}},
    }
    out = transform_response(spec(strip=["internal_flags", "ssn"]), body)
    assert out == {
        "id": "cus_1",
        "name": "Jamie",
        "invoices": [{"id": "inv_1"}],
        "nested": {"deeper": {"keep": 1}},
    }
    assert body["internal_flags"] == ["x"]  # the upstream body is never changed


def test_strip_dotted_paths_only_under_their_parent() -> None:
    body = {
        "customer": {"id": "cus_1", "name": "Jamie"},
        "invoices": [{"id": "inv_1", "customer": {"id": "cus_1", "email": "j@x.co"}}],
        "id": "top",
    }
    out = transform_response(spec(strip=["customer.id", "invoices.customer.email"]), body)
    assert out == {
        "customer": {"name": "Jamie"},
        "invoices": [{"id": "inv_1", "customer": {}}],
        "id": "top",
    }


def test_strip_applies_after_root_and_fields() -> None:
    s = spec(root="data.customer", strip=["internal_flags", "id"])
    assert transform_response(s, RAW_CUSTOMER) == {
        "name": "Jamie Patel",
        "status": "active",
        "tier": "premium",
    }


def test_summarize_fifty_invoices_to_top_five_count_and_total() -> None:
    s = spec(summarize={"top": 5, "totals": {"total_amount": "amount"}}, strip=["status"])
    out = transform_response(s, INVOICES)
    assert out["count"] == 50
    assert out["more"] == 45
    assert out["total_amount"] == sum(i["amount"] for i in INVOICES)
    assert [i["id"] for i in out["items"]] == [f"inv_{i}" for i in range(5)]
    assert "status" not in out["items"][0]


def test_summarize_a_list_inside_the_answer_in_place() -> None:
    body: dict[str, Any] = {"customer": "Jamie", "invoices": INVOICES, "ignored": [1, 2, 3]}
    s = spec(
        summarize={
            "path": "invoices",
            "top": 2,
            "count_as": "invoice_count",
            "items_as": "first",
            "totals": {"owed": "amount", "weird": "due_date"},
        }
    )
    out = transform_response(s, body)
    assert out["customer"] == "Jamie"
    assert out["ignored"] == [1, 2, 3]
    assert out["invoices"] == {
        "first": INVOICES[:2],
        "invoice_count": 50,
        "owed": sum(i["amount"] for i in INVOICES),
        "weird": 0,
        "more": 48,
    }
    assert isinstance(body["invoices"], list)  # not changed in place upstream


def test_summarize_by_expression_and_float_totals() -> None:
    body = {"pages": [{"rows": [{"v": 0.1}, {"v": 0.2}, {"v": True}]}]}
    out = transform_response(
        spec(summarize={"path": "pages[0].rows", "totals": {"sum": "v"}}), body
    )
    assert out == {"items": body["pages"][0]["rows"], "count": 3, "sum": 0.3, "more": 0}


def test_summarize_leaves_non_lists_alone() -> None:
    s = spec(summarize={"path": "invoices"})
    assert transform_response(s, {"invoices": None}) == {"invoices": None}
    assert transform_response(spec(summarize={}), {"a": 1}) == {"a": 1}


def test_error_codes_become_configured_words_only() -> None:
    assert error_words(GET_CUSTOMER, {"error": "no such customer", "code": "CS_404"}, "d") == (
        "CS_404",
        "customer not found",
    )
    # An unknown code is reported, but the words are the default, never the upstream's text.
    assert error_words(GET_CUSTOMER, {"error": "db row 7 missing", "code": "CS_500"}, "dflt") == (
        "CS_500",
        "dflt",
    )
    assert error_words(GET_CUSTOMER, None, "dflt") == (None, "dflt")
    assert error_words(GET_CUSTOMER, "<html>oops</html>", "dflt") == (None, "dflt")
    assert error_words(GET_CUSTOMER, {"code": "a sentence with spaces"}, "dflt") == (None, "dflt")
    assert error_words(GET_CUSTOMER, {"code": True}, "dflt") == (None, "dflt")
    nested = spec(code_field="error.code", messages={"404": "gone"})
    assert error_words(nested, {"error": {"code": 404}}, "dflt") == ("404", "gone")


def test_handler_objects_are_converted_before_transforming() -> None:
    from dataclasses import dataclass

    @dataclass
    class Customer:
        name: str
        tier: str

    out = transform_response(spec(fields={"customer_name": "name"}), Customer("Jamie", "gold"))
    assert out == {"customer_name": "Jamie"}


def test_nan_from_an_upstream_never_makes_invalid_json() -> None:
    out = transform_response(spec(), {"x": float("nan"), "y": [float("inf")]})
    assert out == {"x": None, "y": [None]}
    json.loads(json.dumps(out, allow_nan=False))


def test_bad_expressions_are_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        compiled_response(spec(fields={"a": "b[?"}))
    assert info.value.location == "response.fields.a"
    with pytest.raises(ConfigError):
        transform_response(spec(root="data.[oops"), {})


def test_specs_are_compiled_once() -> None:
    assert compiled_response(GET_CUSTOMER) is compiled_response(GET_CUSTOMER)
    assert compiled_response(GET_CUSTOMER.model_copy()) is not compiled_response(GET_CUSTOMER)


def test_flatten() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [{"e": {"f": 2}}]}}, "g": {}}) == {
        "a_b": 1,
        "a_c_d": [{"e_f": 2}],
        "g": {},
    }
    assert flatten({"a": {"b": 1}}, sep=".") == {"a.b": 1}
    assert flatten([{"a": {"b": 1}}, 3]) == [{"a_b": 1}, 3]
