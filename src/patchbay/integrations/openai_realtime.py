"""OpenAI Realtime: tool schemas for `session.update`, and tool calls answered as client events.

For a client that owns the Realtime socket (WebSocket or WebRTC data channel): send
`session_tools_payload(runtime)` once, feed every server event to a `RealtimeToolBridge`, and
send whatever client events it returns, in order.

Events that reach the call outside a tool answer (webhooks, completions, background outcomes)
come from `RealtimeToolBridge.call_events()`: for each, a `conversation.item.create` (a system
message) and, when it carries words, a `response.create` (held while a response is running).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from patchbay._errors import ErrorCode
from patchbay.integrations._callnote import CallEventLike, event_note
from patchbay.runtime import ErrorInfo, ToolCall, ToolResult, ToolRuntime
from patchbay.spec import CallContext, SchemaFormat, export_tools

__all__ = [
    "RealtimeToolBridge",
    "call_event_item",
    "function_call_output",
    "handle_server_event",
    "session_tools_payload",
]

ARGUMENTS_DONE = "response.function_call_arguments.done"
RESPONSE_CREATED = "response.created"
RESPONSE_DONE = "response.done"

ToolChoice = Literal["auto", "none", "required"] | Mapping[str, str]


@dataclass(frozen=True, slots=True)
class _FunctionCall:
    call_id: str
    name: str
    arguments: str


def session_tools_payload(
    runtime: ToolRuntime, *, tool_choice: ToolChoice = "auto"
) -> dict[str, Any]:
    """The `session.update` client event that gives the model every tool of `runtime`."""
    tools = export_tools(list(runtime.tools.values()), SchemaFormat.REALTIME)
    choice = tool_choice if isinstance(tool_choice, str) else dict(tool_choice)
    return {
        "type": "session.update",
        "session": {"type": "realtime", "tools": tools, "tool_choice": choice},
    }


def function_call_output(call_id: str, result: ToolResult) -> dict[str, Any]:
    """The `conversation.item.create` client event that hands `result` to the model."""
    return {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": call_id, "output": result.llm_text()},
    }


def call_event_item(event: CallEventLike) -> dict[str, Any]:
    """The `conversation.item.create` client event that tells the model about a call event."""
    text = event_note(event)
    return {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "system",
            "content": [{"type": "input_text", "text": text}],
        },
    }


async def handle_server_event(
    runtime: ToolRuntime,
    event: Mapping[str, Any],
    call: CallContext,
    *,
    answered: set[str] | None = None,
    respond: bool = True,
) -> list[dict[str, Any]]:
    """Run the tool calls a server event carries; return the client events to send, in order.

    `response.function_call_arguments.done` and `response.done` (its `function_call` output
    items) both carry calls: pass the same `answered` set for every event of a session so a
    call seen in both runs once. The answer is one `function_call_output` item per call, then
    one `response.create` (unless `respond` is false, or the response did not complete).
    Never raises for what the model sent: bad arguments become an `invalid_arguments` output.
    """
    seen = answered if answered is not None else set()
    calls = [c for c in _function_calls(event) if c.call_id not in seen]
    # Claimed before running, so an event handled concurrently does not start the same call.
    seen.update(c.call_id for c in calls)
    out: list[dict[str, Any]] = []
    # In the model's order, one after another: a later call may need what an earlier one put
    # in the call's state (a payment needs the customer the lookup found).
    for fc in calls:
        out.append(function_call_output(fc.call_id, await _run(runtime, call, fc)))
    if out and respond and _completed(event):
        out.append({"type": "response.create"})
    return out


class RealtimeToolBridge:
    """One Realtime session's tool calls: runs each call once, and times `response.create`.

    The Realtime API refuses `response.create` while a response is still running, so a call
    answered before its response's `response.done` gets its `response.create` held until then.
    Feed it every server event (it watches `response.created` and `response.done`).
    """

    def __init__(self, runtime: ToolRuntime, call: CallContext | str) -> None:
        self.runtime = runtime
        self.call = runtime.call_context(call)
        self._answered: set[str] = set()
        self._running = 0
        self._response: Literal["idle", "active", "interrupted"] = "idle"
        self._owed = False

    def session_update(self, *, tool_choice: ToolChoice = "auto") -> dict[str, Any]:
        """The `session.update` client event declaring the tools."""
        return session_tools_payload(self.runtime, tool_choice=tool_choice)

    async def handle(self, event: Mapping[str, Any] | str | bytes) -> list[dict[str, Any]]:
        """The client events to send in reply to one server event (often none)."""
        parsed = _parse_event(event)
        if parsed is None:
            return []
        kind = parsed.get("type")
        if kind == RESPONSE_CREATED:
            self._response = "active"
            return []
        if kind == RESPONSE_DONE:
            # A cancelled or failed response (the caller barged in) is followed by the caller's
            # own turn, whose response will read the outputs: asking for another would collide.
            self._response = "idle" if _completed(parsed) else "interrupted"
            if self._response == "interrupted":
                self._owed = False
        self._running += 1
        try:
            out = await handle_server_event(
                self.runtime, parsed, self.call, answered=self._answered, respond=False
            )
        finally:
            self._running -= 1
        if out and self._response != "interrupted":
            self._owed = True
        if self._owed and self._response == "idle" and self._running == 0:
            self._owed = False
            out.append({"type": "response.create"})
        return out

    def call_event(self, event: CallEventLike) -> list[dict[str, Any]]:
        """The client events that bring one call event into the conversation, in order.

        The event's note as a system message, then (when it carries words) `response.create`,
        so the model speaks them; while a response is running, that `response.create` is held
        and returned by `handle` once the response is done.
        """
        out = [call_event_item(event)]
        if event.say:
            if self._response == "idle" and self._running == 0:
                out.append({"type": "response.create"})
            else:
                self._owed = True
        return out

    async def call_events(
        self, *, after: str | None = None
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """The client events to send for each event of the call, as they come, until it ends.

        From the start of the call's stored events, or after the event id `after`.
        """
        stream = self.runtime.call_events(self.call.id, tenant=self.call.tenant, after=after)
        async for event in stream:
            yield self.call_event(event)

    async def end(self) -> None:
        """Release the call's state in the runtime."""
        await self.runtime.end_call(self.call)


def _parse_event(event: Mapping[str, Any] | str | bytes) -> Mapping[str, Any] | None:
    if isinstance(event, Mapping):
        return event
    try:
        parsed = json.loads(event)
    except ValueError:
        return None
    return parsed if isinstance(parsed, Mapping) else None


def _function_calls(event: Mapping[str, Any]) -> list[_FunctionCall]:
    kind = event.get("type")
    if kind == ARGUMENTS_DONE:
        items: list[Any] = [event]
    elif kind == RESPONSE_DONE:
        response = event.get("response")
        output = response.get("output") if isinstance(response, Mapping) else None
        items = [
            i for i in output or () if isinstance(i, Mapping) and i.get("type") == "function_call"
        ]
    else:
        return []
    calls = []
    for item in items:
        call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
        # The beta API's arguments.done carries no name; that call is answered at response.done.
        if isinstance(call_id, str) and call_id and isinstance(name, str) and name:
            calls.append(
                _FunctionCall(call_id, name, arguments if isinstance(arguments, str) else "")
            )
    return calls


def _completed(event: Mapping[str, Any]) -> bool:
    if event.get("type") != RESPONSE_DONE:
        return True
    response = event.get("response")
    return isinstance(response, Mapping) and response.get("status") == "completed"


async def _run(runtime: ToolRuntime, call: CallContext, fc: _FunctionCall) -> ToolResult:
    try:
        arguments = json.loads(fc.arguments) if fc.arguments.strip() else {}
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        return ToolResult(
            ok=False,
            tool=fc.name,
            call_id=call.id,
            error=ErrorInfo(
                ErrorCode.INVALID_ARGUMENTS.value,
                "The arguments were not a JSON object; call the function again with valid JSON.",
            ),
        )
    return await runtime.execute(ToolCall(fc.name, arguments, call, tool_call_id=fc.call_id))
