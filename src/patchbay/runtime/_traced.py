"""A tool execution inside its `execute_tool` span, when the runtime traces (`otel=`)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from patchbay.runtime._result import ToolResult
from patchbay.spec._call import CallContext
from patchbay.spec._model import Tool

if TYPE_CHECKING:
    from patchbay.observe._trace_api import Tracer

_MAX_NAME = 64  # a tool name the caller made up is cut to what no real tool name exceeds


async def traced(
    tracing: Tracer,
    work: Coroutine[Any, Any, ToolResult],
    name: str,
    tool: Tool | None,
    call: CallContext,
    tool_call_id: str | None,
) -> ToolResult:
    """Run `work` (an execution not yet started) as the current span's `execute_tool` child.

    The span is current while it runs, so every attempt's client span is its child and policy
    decisions become its events. `error.type` is the result's error code.
    """
    span = tracing.start_tool(
        name if len(name) <= _MAX_NAME else name[:_MAX_NAME] + "…",
        description=tool.description if tool is not None else None,
        call_id=call.id,
        tool_call_id=tool_call_id,
        integration=(tool.integration or None) if tool is not None else None,
    )
    try:
        result = await work
    except asyncio.CancelledError:
        tracing.end_tool(span, error_type="cancelled")
        raise
    except BaseException as exc:  # the runtime answers every failure: this is a bug or an exit
        tracing.end_tool(span, error_type=type(exc).__qualname__)
        raise
    meta = result.meta
    attempts = meta.get("attempts")
    tracing.end_tool(
        span,
        error_type=result.error.code if result.error is not None else None,
        attempts=attempts if isinstance(attempts, int) else None,
        cached=bool(meta.get("cached")),
    )
    return result
