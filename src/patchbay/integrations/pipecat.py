"""Pipecat adapter: every patchbay tool as a function of a Pipecat LLM service.

Needs the ``pipecat`` extra (``pip install patchbay[pipecat]``, pipecat-ai 1.14 or later)::

    call = CallContext(id=call_sid, caller=caller_number)
    tools = register_tools(llm, runtime, call)
    context = LLMContext(messages, tools=tools)

How each tool runs inside Pipecat:

- Pipecat's own timeout is the tool's ``budget_s`` plus a margin, so patchbay's budget answers
  first, with the tool's ``say.timeout`` words, and Pipecat's cancellation is only a backstop.
- When the call is still running after ``delayed_after_s``, the tool's ``say.delayed`` words are
  pushed as a ``TTSSpeakFrame`` (kept out of the LLM context, where it would sit between the
  tool call and its result).
- Reads are cancelled when the caller interrupts: the HTTP request is abandoned and no later
  request of the tool is made.
- Writes (``tool.is_write``) are shielded: an interruption or Pipecat's timeout stops the wait,
  never the write. When a write finishes after its call was cancelled, its result is appended
  to the LLM context as a developer message, so the model does not believe a payment that went
  through was cancelled.
- Every result reaches the model as ``ToolResult.for_llm()``.

Events that reach the call outside a tool answer (webhooks, completions, background outcomes)
are spoken by a `CallEventSpeaker` placed right after the LLM service.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import LLMMessagesAppendFrame, TTSSpeakFrame
from pipecat.services.llm_service import FunctionCallParams, LLMService

from patchbay.integrations._pipecat_events import CallEventSpeaker
from patchbay.runtime import ToolCall, ToolResult, ToolRuntime
from patchbay.spec import CallContext, Tool, parameters_schema, tool_description

__all__ = [
    "CallEventSpeaker",
    "PipecatTools",
    "function_schema",
    "register_tools",
    "tools_schema",
]

log = logging.getLogger("patchbay.integrations.pipecat")


def _select(runtime: ToolRuntime, tools: Iterable[str] | None) -> list[Tool]:
    if tools is None:
        return list(runtime.tools.values())
    chosen = []
    for name in tools:
        tool = runtime.tools.get(name)
        if tool is None:
            raise ValueError(f"no tool named {name!r}; known: {', '.join(runtime.tools)}")
        chosen.append(tool)
    return chosen


def function_schema(tool: Tool) -> FunctionSchema:
    """The Pipecat FunctionSchema of one tool (its flat JSON Schema properties)."""
    schema = parameters_schema(tool)
    return FunctionSchema(
        name=tool.name,
        description=tool_description(tool),
        properties=schema["properties"],
        required=list(schema["required"]),
    )


def tools_schema(runtime: ToolRuntime, *, tools: Iterable[str] | None = None) -> ToolsSchema:
    """The ToolsSchema advertising the runtime's tools (or the named ones) to a Pipecat LLM."""
    return ToolsSchema(standard_tools=[function_schema(t) for t in _select(runtime, tools)])


class PipecatTools:
    """The function-call handlers of one phone call, registered on one Pipecat LLM service."""

    def __init__(
        self,
        runtime: ToolRuntime,
        call: CallContext | str,
        *,
        delayed_after_s: float = 1.5,
        timeout_margin_s: float = 1.0,
    ) -> None:
        self.runtime = runtime
        self.call = runtime.call_context(call)
        self.delayed_after_s = delayed_after_s
        self.timeout_margin_s = timeout_margin_s
        # Writes that outlived their call; held so the loop does not drop them half-done.
        self._orphans: set[asyncio.Task[Any]] = set()

    def register(self, llm: LLMService[Any], *, tools: Iterable[str] | None = None) -> ToolsSchema:
        """Register a handler for each tool (all, or the named ones); returns their schema."""
        chosen = _select(self.runtime, tools)
        for tool in chosen:
            llm.register_function(
                tool.name,
                self._handler(tool),
                # Writes are shielded inside the handler instead: registering them with
                # cancel_on_interruption=False would make Pipecat run them as async tools, and
                # the model would speak before the payment's confirmation number exists.
                cancel_on_interruption=True,
                timeout_secs=tool.budget_s + self.timeout_margin_s,
            )
        return ToolsSchema(standard_tools=[function_schema(t) for t in chosen])

    async def wait_for_writes(self) -> None:
        """Wait for writes that were still running when their call was cancelled."""
        while self._orphans:
            await asyncio.gather(*list(self._orphans), return_exceptions=True)

    def _handler(self, tool: Tool) -> Callable[[FunctionCallParams], Awaitable[None]]:
        async def handle(params: FunctionCallParams) -> None:
            request = ToolCall(tool.name, dict(params.arguments), self.call, params.tool_call_id)
            words = tool.say.delayed
            speaker = asyncio.create_task(self._speak_later(params, words)) if words else None
            try:
                if tool.is_write:
                    result = await self._shielded(request, params)
                else:
                    result = await self.runtime.execute(request)
            finally:
                if speaker is not None:
                    speaker.cancel()
            await params.result_callback(result.for_llm())

        handle.__name__ = f"patchbay_{tool.name}"
        return handle

    async def _shielded(self, request: ToolCall, params: FunctionCallParams) -> ToolResult:
        work = asyncio.ensure_future(self.runtime.execute(request))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            late = asyncio.create_task(self._report_late(work, params))
            self._orphans.add(late)
            late.add_done_callback(self._orphans.discard)
            raise

    async def _report_late(
        self, work: asyncio.Future[ToolResult], params: FunctionCallParams
    ) -> None:
        result = await work
        text = json.dumps(result.for_llm(), ensure_ascii=False, separators=(",", ":"))
        note = (
            f"The {result.tool} call (tool_call_id {params.tool_call_id}) reported as cancelled "
            f"finished anyway; its result: {text}"
        )
        try:
            frame = LLMMessagesAppendFrame(
                messages=[{"role": "developer", "content": note}], run_llm=False
            )
            await params.llm.push_frame(frame)
        except Exception:  # the pipeline may be gone by now; the write itself is done
            log.warning("could not tell the LLM that %s finished late", result.tool)

    async def _speak_later(self, params: FunctionCallParams, words: str) -> None:
        await asyncio.sleep(self.delayed_after_s)
        await params.llm.push_frame(TTSSpeakFrame(words, append_to_context=False))


def register_tools(
    llm: LLMService[Any],
    runtime: ToolRuntime,
    call: CallContext | str,
    *,
    tools: Iterable[str] | None = None,
    delayed_after_s: float = 1.5,
    timeout_margin_s: float = 1.0,
) -> ToolsSchema:
    """Register patchbay tools on a Pipecat LLM service for one call; returns their ToolsSchema.

    `call` is the phone call's context (or its id): every tool call of this LLM service shares
    it, so state a lookup stores (the customer id) reaches the payment that follows.
    """
    handlers = PipecatTools(
        runtime, call, delayed_after_s=delayed_after_s, timeout_margin_s=timeout_margin_s
    )
    return handlers.register(llm, tools=tools)
