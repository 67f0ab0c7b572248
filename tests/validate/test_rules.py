"""Business rules (JMESPath over args and call) and Python validator hooks, sync and async."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from patchbay._errors import ConfigError, InvalidArguments
from patchbay.spec._call import CallContext
from patchbay.spec._model import Tool
from patchbay.validate import (
    RULES_FIELD,
    ToolValidator,
    validate_arguments,
    validate_arguments_async,
)


def payment(*rules: dict[str, str]) -> Tool:
    return Tool.model_validate(
        {
            "name": "create_payment",
            "integration": "billing",
            "description": "Pay an invoice.",
            "parameters": {
                "invoice_id": {"type": "string"},
                "amount": {"type": "integer", "minimum": 1},
            },
            "rules": list(rules),
            "request": {"method": "POST", "path": "/payments"},
        }
    )


OPEN_INVOICE = {
    "check": "args.amount <= call.state.open_invoice_amount",
    "message": "amount must not exceed the open invoice",
}


def test_rule_over_call_state_holds_and_fails() -> None:
    tool = payment(OPEN_INVOICE)
    call = CallContext(id="c-1", state={"open_invoice_amount": 24700})
    args = {"invoice_id": "inv_1", "amount": 24700}
    assert validate_arguments(tool, args, call) == args
    with pytest.raises(InvalidArguments) as info:
        validate_arguments(tool, {"invoice_id": "inv_1", "amount": 24701}, call)
    assert info.value.fields == {"amount": "amount must not exceed the open invoice"}
    assert info.value.call_id == "c-1"
    assert info.value.tool == "create_payment"


def test_rule_with_missing_state_fails_as_null() -> None:
    tool = payment(OPEN_INVOICE)
    with pytest.raises(InvalidArguments) as info:
        validate_arguments(tool, {"invoice_id": "inv_1", "amount": 5}, CallContext(id="c-2"))
    assert info.value.fields == {"amount": "amount must not exceed the open invoice"}


def test_rules_use_jmespath_truthiness_and_report_each_failure() -> None:
    tool = payment(
        {"check": "args.amount", "message": "zero is still a number"},
        {"check": "starts_with(args.invoice_id, 'inv_')", "message": "invoice ids start inv_"},
        {"check": "call.tenant == 'acme'", "message": "only acme may pay"},
        {"check": "length(args.amount) > `0`", "message": "cannot be evaluated"},
    )
    with pytest.raises(InvalidArguments) as info:
        validate_arguments(tool, {"invoice_id": "x_1", "amount": 3}, CallContext(id="c"))
    assert info.value.fields == {
        "invoice_id": "invoice ids start inv_",
        RULES_FIELD: "only acme may pay",
        "amount": "cannot be evaluated",
    }
    assert "only acme may pay" in info.value.message


def test_rules_run_only_on_arguments_that_passed_the_schema() -> None:
    tool = payment(OPEN_INVOICE)
    with pytest.raises(InvalidArguments) as info:
        validate_arguments(tool, {"invoice_id": "inv_1", "amount": "lots"}, CallContext(id="c"))
    assert info.value.fields == {"amount": "must be a whole number, not text"}


def test_broken_rule_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        ToolValidator(payment({"check": "args.amount <=", "message": "m"}))
    assert info.value.location == "tools.create_payment.rules[0]"


def limit_hook(args: dict[str, Any], call: CallContext) -> Mapping[str, str] | None:
    if args["amount"] > 500 and call.tenant == "small":
        return {"amount": "is over this tenant's limit of 500"}
    return None


def raising_hook(args: dict[str, Any], call: CallContext) -> None:
    if args["invoice_id"] == "inv_closed":
        raise InvalidArguments("closed", fields={"invoice_id": "is already paid"})


def upper_hook(args: dict[str, Any], call: CallContext) -> None:
    args["invoice_id"] = args["invoice_id"].lower()


async def async_hook(args: dict[str, Any], call: CallContext) -> Mapping[str, str] | None:
    return {"invoice_id": "is not open"} if args["invoice_id"] == "inv_paid" else None


def test_sync_hooks_fail_merge_and_normalise() -> None:
    tool = payment()
    small = CallContext(id="c", tenant="small")
    hooks = (upper_hook, limit_hook, raising_hook)
    assert validate_arguments(tool, {"invoice_id": "INV_1", "amount": 9}, small, hooks=hooks) == {
        "invoice_id": "inv_1",
        "amount": 9,
    }
    with pytest.raises(InvalidArguments) as info:
        validate_arguments(tool, {"invoice_id": "INV_CLOSED", "amount": 900}, small, hooks=hooks)
    assert info.value.fields == {
        "amount": "is over this tenant's limit of 500",
        "invoice_id": "is already paid",
    }
    assert info.value.call_id == "c"


def test_async_hook_needs_the_async_entry_point() -> None:
    with pytest.raises(TypeError, match="validate_arguments_async"):
        validate_arguments(
            payment(), {"invoice_id": "inv_1", "amount": 9}, CallContext(id="c"), hooks=[async_hook]
        )


async def test_async_entry_point_runs_sync_and_async_hooks() -> None:
    tool = payment()
    call = CallContext(id="c", tenant="small")
    hooks = (limit_hook, async_hook)
    ok = await validate_arguments_async(
        tool, {"invoice_id": "inv_1", "amount": 9}, call, hooks=hooks
    )
    assert ok == {"invoice_id": "inv_1", "amount": 9}
    with pytest.raises(InvalidArguments) as info:
        await validate_arguments_async(
            tool, {"invoice_id": "inv_paid", "amount": 600}, call, hooks=hooks
        )
    assert info.value.fields == {
        "amount": "is over this tenant's limit of 500",
        "invoice_id": "is not open",
    }


async def test_async_entry_point_still_checks_schema_and_rules() -> None:
    tool = payment(OPEN_INVOICE)
    with pytest.raises(InvalidArguments) as info:
        await validate_arguments_async(tool, {"amount": 0}, CallContext(id="c"))
    assert info.value.fields == {
        "invoice_id": "is required but was not given",
        "amount": "must be at least 1",
    }


def test_hook_returning_nonsense_is_a_programming_error() -> None:
    def bad(args: dict[str, Any], call: CallContext) -> Any:
        return ["amount"]

    with pytest.raises(TypeError, match="not a mapping"):
        validate_arguments(
            payment(), {"invoice_id": "inv_1", "amount": 1}, CallContext(id="c"), hooks=[bad]
        )
