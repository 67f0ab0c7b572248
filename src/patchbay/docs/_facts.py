"""What the docs say about each tool, worked out from the config alone (pure, spec only).

Markdown and HTML render the same facts: a page per integration, and per tool what it does,
when the agent calls it, its inputs, outputs, error modes with the words the LLM hears, its
limits and example interactions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from patchbay.spec import Config, Example, Integration, Param, RetrySpec, Tool
from patchbay.spec._returns import returns_schema

__all__ = ["ErrorMode", "Input", "Interaction", "Page", "Step", "ToolDoc", "pages"]

BUILTIN_PAGE = "builtin"


@dataclass(frozen=True, slots=True)
class Step:
    """One tool call of a scripted conversation, as the docs show it."""

    tool: str
    args: Mapping[str, Any]
    expect: Mapping[str, Any] = field(default_factory=dict)
    faults: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Interaction:
    """A scripted conversation (a scenario): its name, words about it and its steps."""

    name: str
    steps: tuple[Step, ...]
    description: str | None = None
    caller: str | None = None


@dataclass(frozen=True, slots=True)
class Input:
    """One row of a tool's inputs table."""

    name: str
    type: str
    required: str
    description: str
    rules: str


@dataclass(frozen=True, slots=True)
class ErrorMode:
    """An error code a tool can produce, when, and the words the LLM (and the caller) hear."""

    code: str
    when: str
    words: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ToolDoc:
    """Everything the page says about one tool."""

    name: str
    description: str
    when: str | None
    kind: str  # "GET /customers/{id}", "Python handler", "answered by patchbay"
    handler: bool  # its examples show what the handler returns, not an API answer
    write: bool
    inputs: tuple[Input, ...]
    require: tuple[str, ...]
    outputs: tuple[tuple[str, str], ...]  # (what the LLM gets, where it comes from)
    root: str | None
    examples: tuple[Example, ...]
    errors: tuple[ErrorMode, ...]
    api_messages: tuple[tuple[str, str], ...]  # (API error code, words)
    limits: tuple[tuple[str, str], ...]
    interactions: tuple[tuple[Interaction, Step], ...]
    returns: Mapping[str, Any] | None = None  # JSON Schema of what the LLM receives


@dataclass(frozen=True, slots=True)
class Page:
    """One integration's page (or the builtin tools')."""

    name: str
    base_url: str | None
    auth: str | None
    tools: tuple[ToolDoc, ...]
    interactions: tuple[Interaction, ...]


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _type(param: Param) -> str:
    if param.type == "array" and param.items is not None:
        return f"array of {param.items.type}"
    return param.type


def _rules(param: Param) -> str:
    out = []
    if param.format:
        out.append(f"format {param.format}")
    if param.pattern:
        out.append(f"pattern {param.pattern}")
    if param.enum:
        out.append("one of " + ", ".join(map(str, param.enum)))
    if param.minimum is not None:
        out.append(f"at least {_num(param.minimum)}")
    if param.maximum is not None:
        out.append(f"at most {_num(param.maximum)}")
    if param.min_length is not None:
        out.append(f"at least {param.min_length} characters")
    if param.max_length is not None:
        out.append(f"at most {param.max_length} characters")
    if param.min_items is not None:
        out.append(f"at least {param.min_items} items")
    if param.max_items is not None:
        out.append(f"at most {param.max_items} items")
    if param.default is not None:
        out.append(f"default {json.dumps(param.default)}")
    return "; ".join(out)


def _inputs(tool: Tool) -> tuple[Input, ...]:
    rows = []
    for name, param in tool.parameters.items():
        if tool.is_required(name):
            required = "yes"
        elif tool.require and name in tool.require.one_of:
            required = "one of " + ", ".join(tool.require.one_of)
        else:
            required = "no"
        rows.append(Input(name, _type(param), required, param.description or "", _rules(param)))
    return tuple(rows)


def _validation_words(tool: Tool) -> list[str]:
    words = []
    if tool.require and tool.require.one_of:
        words.append(f"give at least one of {', '.join(tool.require.one_of)}; none was given")
    for name, param in tool.parameters.items():
        if param.pattern:
            words.append(f"{name}: does not have the expected form (pattern {param.pattern})")
        if param.minimum is not None:
            words.append(f"{name}: must be at least {_num(param.minimum)}")
        if param.maximum is not None:
            words.append(f"{name}: must be at most {_num(param.maximum)}")
    words.extend(rule.message for rule in tool.rules)
    return words


def _said(*values: str | None) -> tuple[str, ...]:
    return tuple(f'say: "{v}"' for v in values if v)


def _errors(tool: Tool, integration: Integration | None) -> tuple[ErrorMode, ...]:
    say = tool.say
    modes = []
    if tool.parameters or tool.rules or tool.validators:
        what = "the arguments break the inputs table, a requirement or a rule; nothing is sent"
        modes.append(ErrorMode("invalid_arguments", what, tuple(_validation_words(tool))))
    if integration is None:
        return tuple(modes)
    api = "the API's words for its error code (below), else patchbay's"
    modes += [
        ErrorMode("not_found", "the API answers 404 or 410", (api, *_said(say.not_found))),
        ErrorMode(
            "client_error", "the API refuses the request (another 4xx)", _said(say.client_error)
        ),
        ErrorMode("unauthorized", "the API refuses patchbay's credentials (401, 403)", ()),
    ]
    if tool.is_write:
        modes.append(
            ErrorMode("conflict", "the API answers 409 or 412", (api, *_said(say.conflict)))
        )
    modes += [
        ErrorMode(
            "rate_limited", "the API answers 429 (after the retries), or the limiter says no", ()
        ),
        ErrorMode("upstream_unavailable", "the API is down or answers 5xx after every retry", ()),
        ErrorMode("timeout", f"no answer within the tool's {_num(tool.budget_s)} s budget", ()),
    ]
    if integration.breaker is not None:
        modes.append(ErrorMode("circuit_open", "the API failed too often lately: no request", ()))
    if integration.quota is not None or tool.quota is not None:
        modes.append(ErrorMode("quota_exceeded", "a quota is used up: no request", ()))
    elif _guard_blocks(tool):
        modes.append(
            ErrorMode("quota_exceeded", "the tool's guard stopped a runaway agent: no request", ())
        )
    if tool.is_write:
        modes.append(
            ErrorMode(
                "pending",
                "the write was sent but its outcome is unknown; never resent by the agent",
                _said(say.pending or say.timeout),
            )
        )
    failed = _said(say.failed)
    with_failed = {"unauthorized", "rate_limited", "upstream_unavailable", "circuit_open",
                   "quota_exceeded"}  # fmt: skip
    out = []
    for mode in modes:
        words = mode.words
        if mode.code in with_failed:
            words = (*words, *failed)
        elif mode.code == "timeout":
            words = (*words, *_said(say.timeout or say.failed))
        out.append(ErrorMode(mode.code, mode.when, words))
    return tuple(out)


def _guard_blocks(tool: Tool) -> bool:
    guard = tool.guard
    if guard is None or guard.action != "block":
        return False
    return guard.max_per_call is not None or guard.max_per_minute is not None


def _guard_text(tool: Tool) -> str:
    guard = tool.guard
    assert guard is not None  # the caller checked
    parts = []
    if guard.max_per_call is not None:
        parts.append(f"{guard.max_per_call} calls per phone call")
    if guard.max_per_minute is not None:
        parts.append(f"{guard.max_per_minute} calls a minute per tenant")
    if guard.baseline is not None:
        parts.append(f"{_num(guard.baseline.factor)}x its usual rate a minute")
    how = "over a limit: reported, the call goes through"
    if _guard_blocks(tool):
        how = "over a limit: reported and refused"
        if guard.max_per_minute is not None:
            how += f" (a minute over: for {_num(guard.cool_off_s)} s)"
    return f"{', '.join(parts)}; {how}"


def _retry(tool: Tool, integration: Integration) -> RetrySpec:
    return tool.retry or integration.retry


def _limits(tool: Tool, integration: Integration | None) -> tuple[tuple[str, str], ...]:
    rows = [("budget", f"{_num(tool.budget_s)} s for the whole call, retries included")]
    if integration is None:
        return tuple(rows)
    rows.append(("timeout", f"{_num(integration.timeout_s)} s per attempt"))
    retry = _retry(tool, integration)
    resend = ""
    if tool.is_write:
        resend = (
            "; resent with the same idempotency key"
            if tool.idempotency
            else "; a write without an idempotency key is not resent once it may have arrived"
        )
    rows.append(
        (
            "retries",
            f"up to {retry.attempts} attempts on network errors, 408, 429 and 5xx, backoff "
            f"{_num(retry.backoff_s)} s to {_num(retry.max_backoff_s)} s{resend}",
        )
    )
    if tool.cache is not None:
        stale = (
            f", stale answers for {_num(tool.cache.stale_if_error_s)} s when the API fails"
            if tool.cache.stale_if_error_s
            else ""
        )
        rows.append(("cache", f"answers kept {_num(tool.cache.ttl_s)} s{stale}"))
    if integration.rate_limit is not None:
        limit = integration.rate_limit
        rows.append(
            ("rate limit", f"{_num(limit.per_second)} requests/s to {integration.name}, "
             f"bursts of {limit.burst}")
        )  # fmt: skip
    for scope, quota in (("integration", integration.quota), ("tool", tool.quota)):
        if quota is not None and quota.per_day:
            rows.append((f"{scope} quota", f"{quota.per_day} requests a day"))
        if quota is not None and quota.per_call:
            rows.append((f"{scope} quota", f"{quota.per_call} calls per phone call"))
    if tool.guard is not None:
        rows.append(("anomaly guard", _guard_text(tool)))
    if integration.breaker is not None:
        b = integration.breaker
        rows.append(
            ("circuit breaker", f"opens at {b.failure_rate:.0%} failures of the last {b.window} "
             f"calls (at least {b.min_calls}), for {_num(b.open_s)} s")
        )  # fmt: skip
    if tool.idempotency is not None:
        idem = tool.idempotency
        rows.append(
            ("idempotency", f"key {idem.key} in {idem.header}; an unknown outcome is confirmed "
             f"in the background for up to {_num(idem.reconcile_s)} s")
        )  # fmt: skip
    return tuple(rows)


def _kind(tool: Tool) -> str:
    if tool.builtin is not None:
        return "answered by patchbay"
    if tool.request is not None:
        return f"{tool.request.method} {tool.request.path}"
    if tool.graphql is not None:
        return f"GraphQL {tool.graphql.kind} {tool.graphql.operation}"
    return f"Python handler {tool.handler}"


def _outputs(tool: Tool) -> tuple[tuple[str, str], ...]:
    fields = tuple((out, expr) for out, expr in (tool.response.fields or {}).items())
    summary = tool.response.summarize
    if summary is not None:
        fields += (
            (summary.count_as, "how many items"),
            (summary.items_as, f"the first {summary.top}"),
        )
        fields += tuple((out, f"total of {item}") for out, item in summary.totals.items())
    return fields


def tool_doc(
    tool: Tool, integration: Integration | None, interactions: Sequence[Interaction] = ()
) -> ToolDoc:
    """The facts about one tool."""
    used = tuple((i, s) for i in interactions for s in i.steps if s.tool == tool.name)
    return ToolDoc(
        name=tool.name,
        description=tool.description,
        when=tool.when,
        kind=_kind(tool),
        handler=tool.handler is not None,
        write=tool.is_write,
        inputs=_inputs(tool),
        require=tool.require.all_of if tool.require else (),
        outputs=_outputs(tool),
        root=tool.response.root,
        examples=tool.examples,
        errors=_errors(tool, integration),
        api_messages=tuple(tool.response.messages.items()),
        limits=_limits(tool, integration),
        interactions=used,
        returns=returns_schema(tool),
    )


def _auth(integration: Integration) -> str | None:
    auth = integration.auth
    if auth is None:
        return None
    if auth.type == "api_key":
        where = f"query parameter {auth.query}" if auth.query else f"header {auth.header}"
        return f"API key in the {where}"
    return {"bearer": "bearer token", "basic": "HTTP basic", "oauth2": "OAuth 2 client "
            "credentials", "jwt": "signed JWT", "mtls": "mutual TLS"}[auth.type]  # fmt: skip


def pages(config: Config, interactions: Iterable[Interaction] = ()) -> list[Page]:
    """One page per integration (in config order), and one for builtin tools if any."""
    scripted = tuple(interactions)
    out = []
    for name, integration in config.integrations.items():
        tools = tuple(
            tool_doc(t, integration, scripted)
            for t in config.tools.values()
            if t.integration == name
        )
        names = {t.name for t in tools}
        mine = tuple(i for i in scripted if any(s.tool in names for s in i.steps))
        out.append(Page(name, integration.base_url, _auth(integration), tools, mine))
    builtin = tuple(tool_doc(t, None, scripted) for t in config.tools.values() if not t.integration)
    if builtin:
        names = {t.name for t in builtin}
        mine = tuple(i for i in scripted if any(s.tool in names for s in i.steps))
        out.append(Page(BUILTIN_PAGE, None, None, builtin, mine))
    return out
