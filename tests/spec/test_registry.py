"""Python tools: parameters inferred from the handler's signature, merging, resolution."""

from __future__ import annotations

import enum
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest

from patchbay._errors import ConfigError, ConfigErrors
from patchbay.spec import (
    CallContext,
    Param,
    Tool,
    ToolRegistry,
    load_config,
    load_config_text,
    merge_tools,
    parameters_schema,
    resolve_handler,
)


class HandlerContext:
    """Stands in for the runtime's context: only its position matters to the registry."""


class Tier(enum.StrEnum):
    FREE = "free"
    PREMIUM = "premium"


def _registry() -> ToolRegistry:
    tools = ToolRegistry()

    @tools.tool(
        integration="billing",
        description="Look up open invoices by phone or email",
        require_one_of=("phone", "email"),
        say={"delayed": "Still looking..."},
        budget_s=4,
    )
    async def lookup_customer_invoices(
        ctx: HandlerContext,
        phone: Annotated[str | None, Param(format="e164")] = None,
        email: str | None = None,
    ) -> dict[str, Any]:
        return {"phone": phone, "email": email}

    return tools


def test_the_brief_example_registers() -> None:
    tools = _registry()
    tool = tools.tools()["lookup_customer_invoices"]
    assert isinstance(tool, Tool)
    assert tool.integration == "billing"
    assert tool.say.delayed == "Still looking..."
    assert tool.budget_s == 4
    assert tool.require is not None and tool.require.one_of == ("phone", "email")
    assert tool.handler is not None and tool.handler.endswith(
        ":_registry.<locals>.lookup_customer_invoices"
    )
    assert set(tool.parameters) == {"phone", "email"}  # ctx skipped
    assert tool.parameters["phone"].format == "e164"
    assert tool.parameters["phone"].type == "string"
    assert not tool.is_required("phone") and not tool.is_required("email")


async def test_handler_is_kept_and_still_callable() -> None:
    tools = _registry()
    handler = tools.handler("lookup_customer_invoices")
    assert await handler(HandlerContext(), phone="+15551234567") == {
        "phone": "+15551234567",
        "email": None,
    }
    with pytest.raises(KeyError):
        tools.handler("nope")
    assert "lookup_customer_invoices" in tools and len(tools) == 1


def test_types_map_to_json_schema_types() -> None:
    tools = ToolRegistry()

    @tools.tool(integration="b")
    async def everything(
        context: object,
        text: str,
        count: int,
        ratio: float,
        flag: bool,
        tags: list[str],
        codes: tuple[int, ...],
        status: Literal["open", "paid"],
        level: Literal[1, 2, 3],
        tier: Tier,
        note: str | None,
        limit: int = 10,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Everything at once.

        The second paragraph is not part of the description.
        """

    tool = tools.tools()["everything"]
    p = tool.parameters
    assert tool.description == "Everything at once."
    assert [p[n].type for n in ("text", "count", "ratio", "flag", "tags", "codes")] == [
        "string",
        "integer",
        "number",
        "boolean",
        "array",
        "array",
    ]
    assert p["tags"].items == Param(type="string")
    assert p["codes"].items == Param(type="integer")
    assert (p["status"].type, p["status"].enum) == ("string", ("open", "paid"))
    assert (p["level"].type, p["level"].enum) == ("integer", (1, 2, 3))
    assert (p["tier"].type, p["tier"].enum) == ("string", ("free", "premium"))
    assert p["extra"].type == "object"
    assert p["limit"].default == 10
    required = [n for n in p if tool.is_required(n)]
    assert required == [
        "text",
        "count",
        "ratio",
        "flag",
        "tags",
        "codes",
        "status",
        "level",
        "tier",
    ]


def test_annotated_param_merges_constraints() -> None:
    tools = ToolRegistry()

    @tools.tool(integration="b", description="Pay.")
    async def pay(
        ctx: object,
        amount: Annotated[int, Param(minimum=1, maximum=1000, description="cents")],
        invoice_id: Annotated[str, Param(pattern="^inv_[a-z0-9]+$")],
    ) -> None: ...

    p = tools.tools()["pay"].parameters
    assert p["amount"] == Param(type="integer", minimum=1, maximum=1000, description="cents")
    assert p["invoice_id"] == Param(type="string", pattern="^inv_[a-z0-9]+$")


def test_string_annotations_resolve_and_context_hint_is_never_evaluated() -> None:
    tools = ToolRegistry()

    async def handler(ctx: "NotDefinedAnywhere", q: "str", n: "int | None" = None) -> None:  # noqa: F821, UP037
        """Search."""

    tools.tool(integration="b")(handler)
    p = tools.tools()["handler"].parameters
    assert (p["q"].type, p["n"].type, p["n"].required) == ("string", "integer", False)


def test_explicit_parameters_win_over_inference() -> None:
    tools = ToolRegistry()

    @tools.tool(integration="b", description="d", parameters={"q": {"type": "string"}})
    async def search(ctx: object, **kwargs: Any) -> None: ...

    assert tools.tools()["search"].parameters == {"q": Param(type="string")}
    assert parameters_schema(tools.tools()["search"])["required"] == ["q"]


def test_timedelta_budget_and_name_override() -> None:
    tools = ToolRegistry()

    @tools.tool(integration="b", description="d", name="find", budget_s=timedelta(seconds=2.5))
    async def search(ctx: object) -> None: ...

    assert tools.tools()["find"].budget_s == 2.5


@pytest.mark.parametrize(
    ("kwargs", "location"),
    [
        ({"require_one_of": ("q", "zz")}, "tools.search.require.one_of"),
        ({"parameters": {"zz": {"type": "string"}}}, "tools.search.parameters.zz"),
        ({"budget_s": 0}, "tools.search.budget_s"),
        ({"mode": "background", "write": False}, "tools.search.mode"),
        ({"say": {"dlayed": "x"}}, "tools.search.say.dlayed"),
    ],
)
def test_bad_definitions_are_config_errors(kwargs: dict[str, Any], location: str) -> None:
    tools = ToolRegistry()
    with pytest.raises(ConfigErrors) as info:

        @tools.tool(integration="b", description="d", **kwargs)
        async def search(ctx: object, q: str) -> None: ...

    assert [e.location for e in info.value.errors] == [location]
    assert len(tools) == 0


def test_sync_functions_unsupported_types_and_missing_descriptions_are_refused() -> None:
    tools = ToolRegistry()
    with pytest.raises(ConfigError, match="async"):
        tools.tool(integration="b", description="d")(lambda ctx: None)

    async def odd(ctx: object, when: complex) -> None:
        """Odd."""

    with pytest.raises(ConfigError, match="unsupported type"):
        tools.tool(integration="b")(odd)

    async def mixed(ctx: object, v: str | int) -> None:
        """Mixed."""

    with pytest.raises(ConfigError, match="unsupported type"):
        tools.tool(integration="b")(mixed)

    async def undocumented(ctx: object) -> None: ...

    with pytest.raises(ConfigError) as info:
        tools.tool(integration="b")(undocumented)
    assert info.value.errors[0].location == "tools.undocumented.description"  # type: ignore[attr-defined]

    async def no_context() -> None:
        """Nothing."""

    with pytest.raises(ConfigError, match="call context first"):
        tools.tool(integration="b")(no_context)


def test_a_name_registers_once() -> None:
    tools = _registry()
    with pytest.raises(ConfigError, match="already registered"):

        @tools.tool(integration="billing", description="d")
        async def lookup_customer_invoices(ctx: object) -> None: ...


def test_merge_adds_python_tools(example: Path, env: dict[str, str]) -> None:
    config = load_config(example, env=env)
    tools = ToolRegistry()

    @tools.tool(integration="billing", description="Refund a payment.", write=True)
    async def refund(ctx: object, payment_id: str) -> None: ...

    merged = merge_tools(config, tools)
    assert list(merged.tools) == [*config.tools, "refund"]
    assert "refund" not in config.tools  # the original is untouched
    assert merged.integrations == config.integrations and merged.base_dir == config.base_dir


def test_merge_reports_clashes_and_unknown_integrations(example: Path, env: dict[str, str]) -> None:
    config = load_config(example, env=env)
    clash = _registry()

    @clash.tool(integration="crm", description="d")
    async def get_customer(ctx: object, customer_id: str) -> None: ...

    with pytest.raises(ConfigErrors) as info:
        merge_tools(config, clash)
    assert [(e.location, e.message) for e in info.value.errors] == [
        ("tools.lookup_customer_invoices", "this tool is defined both in the config and in Python"),
        ("tools.get_customer", "this tool is defined both in the config and in Python"),
        ("tools.get_customer.integration", "unknown integration 'crm' (integrations: billing)"),
    ]


async def test_resolve_prefers_the_registry() -> None:
    config = load_config_text("integrations:\n  billing: {base_url: 'http://x.test'}\n", env={})
    tools = _registry()
    merged = merge_tools(config, tools)
    tool = merged.tools["lookup_customer_invoices"]
    handler = resolve_handler(merged, tool, tools)
    assert handler is tools.handler("lookup_customer_invoices")
    assert await handler(CallContext(id="c"), email="a@b.test") == {
        "phone": None,
        "email": "a@b.test",
    }
    with pytest.raises(ConfigError, match="inside a function"):
        resolve_handler(merged, tool)  # a <locals> function cannot be imported by name


def test_python_tools_carry_when_and_examples_for_docs_and_the_mock() -> None:
    reg = ToolRegistry()

    @reg.tool(
        integration="crm",
        when="The caller asks who their account manager is.",
        examples=[{"args": {"account_id": "acc_1"}, "answer": {"body": {"manager": "Sam"}}}],
    )
    async def account_manager(ctx: HandlerContext, account_id: str) -> dict[str, str]:
        """Name the caller's account manager."""
        return {"manager": "Sam"}

    tool = reg.tools()["account_manager"]
    assert tool.when == "The caller asks who their account manager is."
    assert tool.examples[0].args == {"account_id": "acc_1"}
    assert tool.examples[0].answer.body == {"manager": "Sam"}


def test_python_tool_examples_must_name_its_parameters() -> None:
    reg = ToolRegistry()
    with pytest.raises(ConfigError) as caught:

        @reg.tool(integration="crm", examples=[{"args": {"acount_id": "acc_1"}}])
        async def account_manager(ctx: HandlerContext, account_id: str) -> dict[str, str]:
            """Name the caller's account manager."""
            return {}

    assert "acount_id" in str(caught.value)
