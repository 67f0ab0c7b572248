"""A caller's W3C `traceparent` as the parent of the tool calls its request runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from patchbay.observe._trace_api import Tracer

__all__ = ["continued"]


async def continued(
    tracing: Tracer, headers: Mapping[str, str], work: Callable[[], Awaitable[Any]]
) -> Any:
    """Run `work` with the caller's trace context current (when its headers carry one).

    The runtime's `execute_tool` spans start from the current context, so they become children
    of the caller's span; several tool calls of one request (a Vapi message) share the parent.
    """
    token = tracing.adopt(headers)
    try:
        return await work()
    finally:
        tracing.release(token)
