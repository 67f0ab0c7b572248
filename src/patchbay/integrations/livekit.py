"""LiveKit Agents adapter: every patchbay tool as a raw-schema function tool.

Needs the ``livekit`` extra (``pip install patchbay[livekit]``, livekit-agents 1.8 or later)::

    session = AgentSession(llm=..., userdata=CallContext(id=room_name, caller=sip_number))
    agent = Agent(instructions=..., tools=function_tools(runtime))

How each tool runs inside LiveKit:

- The schema the LLM sees is the tool's own JSON Schema (``function_tool(raw_schema=...)``).
- A successful call returns ``ToolResult.llm_text()`` (JSON of ``for_llm()``) as the tool output;
  a failed one raises ``livekit.agents.llm.ToolError`` with that same JSON (error code, words,
  the fallback line to say), so LiveKit marks the output as an error for the model.
- The phone call comes from the session (see `call_from_session`), so state a lookup stores
  (the customer id) reaches the payment that follows.
- Reads stop when the caller interrupts the turn (LiveKit's ``wait_if_not_interrupted``
  pattern): the request is cancelled, no later request is made, and no reply is generated.
- Writes are shielded: neither an interruption nor a cancellation of the tool stops them.
- The tool's ``say.delayed`` words play as LiveKit filler speech (``RunContext.with_filler``)
  when the call is still running after ``delayed_after_s``.

Events that reach the call outside a tool answer (webhooks, completions, background outcomes)
are spoken by `speak_call_events(session, runtime)` once the session has started.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any, Literal

from livekit.agents import AgentSession, RunContext, function_tool
from livekit.agents.llm import RawFunctionTool, StopResponse, ToolError

from patchbay.integrations._livekit_events import CallEventSpeaker
from patchbay.runtime import ToolCall, ToolResult, ToolRuntime
from patchbay.spec import CallContext, Tool, parameters_schema, tool_description

__all__ = [
    "CallEventSpeaker",
    "CallResolver",
    "LiveKitTool",
    "call_from_session",
    "function_tools",
    "raw_schema",
    "session_call",
    "speak_call_events",
]

CallResolver = Callable[[RunContext[Any]], CallContext | str]
LiveKitTool = RawFunctionTool[..., Any]

# Writes whose tool call was cancelled run on; held here so the loop cannot drop them.
_WRITES: set[asyncio.Future[ToolResult]] = set()

# One call per session when the session names none, without keeping dead sessions alive.
_SESSION_CALLS: weakref.WeakKeyDictionary[AgentSession[Any], CallContext] = (
    weakref.WeakKeyDictionary()
)


def call_from_session(ctx: RunContext[Any]) -> CallContext | str:
    """The phone call of a tool call, by convention from the session's ``userdata``.

    In order: ``userdata`` is a `CallContext`; or has a ``call`` attribute that is one; or has
    ``call_id`` (and optionally ``tenant`` and ``caller``) as attributes or mapping keys.
    Without any of those the session itself is the call, with an id of its own.
    """
    return session_call(ctx.session)


def session_call(session: AgentSession[Any]) -> CallContext | str:
    """The phone call of a session, read from its ``userdata`` as `call_from_session` says."""
    try:
        userdata = session.userdata
    except ValueError:  # LiveKit's way of saying no userdata was set
        userdata = None
    if isinstance(userdata, CallContext):
        return userdata
    nested = getattr(userdata, "call", None)
    if isinstance(nested, CallContext):
        return nested
    call_id = _field(userdata, "call_id")
    if call_id:
        tenant, caller = _field(userdata, "tenant"), _field(userdata, "caller")
        return CallContext(
            id=str(call_id),
            tenant=str(tenant) if tenant else None,
            caller=str(caller) if caller else None,
        )
    known = _SESSION_CALLS.get(session)
    if known is None:
        known = _SESSION_CALLS[session] = CallContext(id=f"livekit-{uuid.uuid4().hex[:12]}")
    return known


def _field(userdata: object, name: str) -> Any:
    if isinstance(userdata, Mapping):
        return userdata.get(name)
    return getattr(userdata, name, None)


def raw_schema(tool: Tool, *, strict: bool = False) -> dict[str, Any]:
    """The raw function description LiveKit sends to the LLM for one tool."""
    return {
        "name": tool.name,
        "description": tool_description(tool),
        "parameters": parameters_schema(tool, strict=strict),
    }


def function_tools(
    runtime: ToolRuntime,
    *,
    tools: Iterable[str] | None = None,
    call_from_session: CallResolver = call_from_session,
    delayed_after_s: float | None = 1.5,
    strict: bool = False,
) -> list[LiveKitTool]:
    """LiveKit function tools for the runtime's tools (or the named ones).

    `call_from_session` maps a tool call's RunContext to its phone call; `delayed_after_s` is
    when the tool's ``say.delayed`` words play (None: never).
    """
    if tools is None:
        chosen = list(runtime.tools.values())
    else:
        chosen = []
        for name in tools:
            if name not in runtime.tools:
                raise ValueError(f"no tool named {name!r}; known: {', '.join(runtime.tools)}")
            chosen.append(runtime.tools[name])
    return [
        _function_tool(runtime, tool, call_from_session, delayed_after_s, strict) for tool in chosen
    ]


def _function_tool(
    runtime: ToolRuntime,
    tool: Tool,
    resolve: CallResolver,
    delayed_after_s: float | None,
    strict: bool,
) -> LiveKitTool:
    async def invoke(raw_arguments: dict[str, Any], context: RunContext[Any]) -> str:
        call = runtime.call_context(resolve(context))
        request = ToolCall(tool.name, raw_arguments, call, context.function_call.call_id)
        async with _filler(context, tool.say.delayed, delayed_after_s):
            if tool.is_write:
                result = await _run_shielded(runtime, request)
            else:
                result = await _run_interruptible(runtime, request, context)
        if not result.ok:
            raise ToolError(result.llm_text())
        return result.llm_text()

    invoke.__name__ = tool.name
    return function_tool(invoke, raw_schema=raw_schema(tool, strict=strict))


async def _run_shielded(runtime: ToolRuntime, request: ToolCall) -> ToolResult:
    work = asyncio.ensure_future(runtime.execute(request))
    _WRITES.add(work)
    work.add_done_callback(_WRITES.discard)
    # The task keeps running if this await is cancelled: a charge is never left half-done.
    return await asyncio.shield(work)


async def _run_interruptible(
    runtime: ToolRuntime, request: ToolCall, context: RunContext[Any]
) -> ToolResult:
    work = asyncio.ensure_future(runtime.execute(request))
    try:
        await context.speech_handle.wait_if_not_interrupted([work])
    except BaseException:
        work.cancel()
        raise
    if not work.done():
        # The caller spoke over this turn: its answer is no longer wanted, so stop asking.
        work.cancel()
        await asyncio.wait([work])
        raise StopResponse()
    return work.result()


@contextlib.asynccontextmanager
async def _filler(
    context: RunContext[Any], words: str | None, delay: float | None
) -> AsyncIterator[None]:
    if not words or delay is None:
        yield
        return
    async with context.with_filler(words, delay=delay):
        yield


def speak_call_events(
    session: AgentSession[Any],
    runtime: ToolRuntime,
    call: CallContext | str | None = None,
    *,
    speak: Literal["reply", "say"] = "reply",
    after: str | None = None,
) -> CallEventSpeaker:
    """Have `session` speak the events of its call (webhooks, completions, background outcomes).

    Call it once the session has started; `call` defaults to the session's own (its
    ``userdata``, as `call_from_session` reads it). Each event waits for the turn in progress
    to play out, then becomes a reply (``speak="reply"``: ``generate_reply`` with the event's
    note as instructions) or is said word for word (``speak="say"``, needs a TTS). It stops
    when the session closes, or on ``await speaker.aclose()``.
    """
    resolved = session_call(session) if call is None else call
    return CallEventSpeaker(session, runtime, resolved, speak=speak, after=after).start()
