"""Vapi server URL: `tool-calls` messages in, `{"results": [...]}` out.

Vapi has sent a tool call in several shapes over time, and all of them may arrive:

- `toolCallList` items `{"id", "type": "function", "function": {"name", "arguments"}}`, where
  `arguments` is an object or a JSON string (the API reference's `ToolCall`);
- `toolCallList` items `{"id", "name", "arguments"}` or `{"id", "name", "parameters"}` (the
  custom-tools and server-events guides);
- only `toolWithToolCallList` entries `{"name" | "function": {"name"}, "toolCall": {...}}`.

Several calls in one message run in parallel. Every call gets a results entry, even one that
names no tool or carries broken arguments, so the assistant never waits on the gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from patchbay.gateway._http import DoorError, arguments_object, first_text, mapping, text_or_none
from patchbay.gateway._vapi_control import VapiControl
from patchbay.runtime import ErrorInfo, ToolCall, ToolResult, ToolRuntime
from patchbay.runtime._logs import log_exception
from patchbay.spec import CallContext

__all__ = ["VapiCall", "answer_vapi", "parse_vapi_calls", "vapi_call_context"]

log = logging.getLogger("patchbay.gateway")

# Informational messages that mean the phone call is over: its state can go.
_ENDED_STATUS = "ended"


@dataclass(frozen=True, slots=True)
class VapiCall:
    """One tool call of a `tool-calls` message, or why it cannot run."""

    id: str
    name: str
    arguments: dict[str, Any]
    problem: str | None = None
    code: str = "invalid_arguments"  # the error code of the problem


def _items(message: Mapping[str, Any]) -> list[Any]:
    for key in ("toolCallList", "toolCalls"):
        found = message.get(key)
        if isinstance(found, list) and found:
            return found
    merged: list[Any] = []
    for entry in message.get("toolWithToolCallList") or ():
        entry = mapping(entry)
        call = dict(mapping(entry.get("toolCall")))
        if "name" not in call and "function" not in call:
            call["name"] = first_text(entry.get("name"), mapping(entry.get("function")).get("name"))
        merged.append(call)
    return merged


def _one(item: Any) -> VapiCall:
    item = mapping(item)
    fn = mapping(item.get("function"))
    call_id = text_or_none(item.get("id")) or ""
    name = first_text(item.get("name"), fn.get("name")) or ""
    raw = None
    for source in (fn, item):
        key = "arguments" if "arguments" in source else "parameters"
        if key in source:
            raw = source[key]
            break
    if not name:
        return VapiCall(call_id, name, {}, "The tool call names no tool.")
    try:
        arguments = arguments_object(raw, "The tool call's arguments")
    except DoorError as exc:
        return VapiCall(call_id, name, {}, exc.message)
    return VapiCall(call_id, name, arguments)


def parse_vapi_calls(message: Mapping[str, Any]) -> list[VapiCall]:
    """Every tool call of a `tool-calls` message, whatever shape each arrived in."""
    return [_one(item) for item in _items(message)]


def vapi_call_context(message: Mapping[str, Any], tenant: str | None) -> CallContext | None:
    """The conversation a message belongs to (a call, or a chat), with the customer's number.

    None when the message names none: its tools still run and answer, without shared state.
    """
    call_id = first_text(
        mapping(message.get("call")).get("id"),
        mapping(message.get("chat")).get("id"),
        mapping(message.get("session")).get("id"),
    )
    if call_id is None:
        return None
    return CallContext(id=call_id, tenant=tenant, caller=_customer_number(message))


def _customer_number(message: Mapping[str, Any]) -> str | None:
    customer = mapping(message.get("customer")) or mapping(
        mapping(message.get("call")).get("customer")
    )
    return text_or_none(customer.get("number"))


def _entry(call: VapiCall, result: ToolResult) -> dict[str, Any]:
    entry: dict[str, Any] = {"toolCallId": call.id, "name": call.name}
    if result.ok:
        entry["result"] = result.llm_text()
        return entry
    entry["error"] = result.llm_text()
    if result.say:
        # Spoken by Vapi instead of its generic failure line: the tool's own fallback words.
        entry["message"] = {"type": "request-failed", "content": result.say}
    return entry


def _problem_entry(call: VapiCall) -> dict[str, Any]:
    words = {"ok": False, "error": call.code, "message": call.problem}
    text = json.dumps(words, separators=(",", ":"), ensure_ascii=False)
    return {"toolCallId": call.id, "name": call.name, "error": text}


def _over_limit(call: VapiCall, limit: int) -> VapiCall:
    words = (
        f"Not run: one message may carry at most {limit} tool calls and this one came after "
        "them; call it again on its own if it is still needed."
    )
    return VapiCall(call.id, call.name, {}, words, "client_error")


def _settled(call: VapiCall, outcome: ToolResult | BaseException, call_id: str) -> ToolResult:
    # The runtime turns failures into results; anything that still escapes costs this call only.
    if isinstance(outcome, ToolResult):
        return outcome
    log_exception(log, outcome, "tool call %s failed outside the runtime", call.name[:64])
    error = ErrorInfo("internal", "The tool failed unexpectedly.")
    return ToolResult(ok=False, tool=call.name, call_id=call_id, error=error)


async def answer_vapi(
    runtime: ToolRuntime,
    message: Mapping[str, Any],
    tenant: str | None,
    *,
    max_calls: int = 16,
    who: tuple[str, str] | None = None,
    control: VapiControl | None = None,
) -> dict[str, Any]:
    """The answer to one server message: tool results for `tool-calls`, `{}` for the rest.

    `who` is the (platform, credential name) the gateway let in, kept on the call for audit.

    Only the first `max_calls` tool calls of a message run; each one after them gets an error.
    With `control`, a call whose messages carry a control URL gets its events posted there.
    """
    kind = message.get("type")
    if kind != "tool-calls":
        call_id = text_or_none(mapping(message.get("call")).get("id"))
        ended = kind == "end-of-call-report" or (
            kind == "status-update" and message.get("status") == _ENDED_STATUS
        )
        if ended and call_id is not None:
            if control is not None:
                await control.end(call_id, tenant)
            await runtime.end_call(call_id, tenant)  # this tenant's call only
        elif control is not None:
            control.observe(message, tenant)
        return {}
    if control is not None:
        control.observe(message, tenant)
    found = vapi_call_context(message, tenant)
    ctx = runtime.call_context(found)
    if found is None:  # a one-off context, still told who is calling
        ctx.tenant, ctx.caller = tenant, _customer_number(message)
    if who is not None:
        ctx.platform, ctx.credential = who
    tools = runtime.tools
    calls = [
        c
        if c.problem is not None or c.name in tools
        # Refused here, not in the runtime: unknown names must not become metric labels.
        else VapiCall(c.id, c.name, {}, f"There is no tool named {c.name[:64]}.")
        for c in parse_vapi_calls(message)
    ]
    if not calls:
        raise DoorError(400, "bad_request", "The tool-calls message lists no tool calls.")
    calls[max_calls:] = [_over_limit(c, max_calls) for c in calls[max_calls:]]
    runnable = [c for c in calls if c.problem is None]
    jobs = [runtime.execute(ToolCall(c.name, c.arguments, ctx, c.id or None)) for c in runnable]
    # One call (the usual case) is awaited directly: gather would wrap it in a task.
    if len(jobs) == 1:
        results = [await jobs[0]]
    else:
        settled = await asyncio.gather(*jobs, return_exceptions=True)
        results = [_settled(c, r, ctx.id) for c, r in zip(runnable, settled, strict=True)]
    by_call = dict(zip((id(c) for c in runnable), results, strict=True))
    entries = [
        _problem_entry(c) if c.problem is not None else _entry(c, by_call[id(c)]) for c in calls
    ]
    return {"results": entries}
