"""The runtime: ToolRuntime.execute(ToolCall) -> ToolResult, and the call lifecycle."""

from patchbay.runtime._handler import HandlerClient, HandlerContext
from patchbay.runtime._result import ErrorInfo, ToolCall, ToolResult
from patchbay.runtime._runtime import ToolRuntime

__all__ = ["ErrorInfo", "HandlerClient", "HandlerContext", "ToolCall", "ToolResult", "ToolRuntime"]
