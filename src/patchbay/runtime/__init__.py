"""The runtime: ToolRuntime.execute(ToolCall) -> ToolResult, and the call lifecycle."""

from typing import TYPE_CHECKING

from patchbay._lazy import lazy_exports

if TYPE_CHECKING:
    from patchbay.runtime._callevents import CallEvent
    from patchbay.runtime._handler import HandlerClient, HandlerContext
    from patchbay.runtime._result import ErrorInfo, ToolCall, ToolResult
    from patchbay.runtime._runtime import ToolRuntime

__all__ = [
    "CallEvent",
    "ErrorInfo",
    "HandlerClient",
    "HandlerContext",
    "ToolCall",
    "ToolResult",
    "ToolRuntime",
]

# Each name's module is imported on first use, for start-up time (see patchbay._lazy).
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "._callevents": ("CallEvent",),
        "._handler": (
            "HandlerClient",
            "HandlerContext",
        ),
        "._result": (
            "ErrorInfo",
            "ToolCall",
            "ToolResult",
        ),
        "._runtime": ("ToolRuntime",),
    },
)
