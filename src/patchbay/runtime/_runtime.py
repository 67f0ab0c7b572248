"""ToolRuntime: the one place a tool call becomes a ToolResult, whatever happens on the way."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from patchbay._errors import (
    DeadlineExceeded,
    ErrorCode,
    InvalidArguments,
    ToolError,
    UpstreamUnavailable,
)
from patchbay.http._build import build_request
from patchbay.http._types import Request, Response, Transport
from patchbay.observe._events import Emitter, Event, EventSink
from patchbay.observe._sinks import LoggingSink
from patchbay.policies._base import Exchange
from patchbay.policies._classify import error_for_status
from patchbay.runtime._handler import HandlerClient, HandlerContext
from patchbay.runtime._pipeline import Pipelines
from patchbay.runtime._result import ErrorInfo, ToolCall, ToolResult
from patchbay.spec import Config, Tool, load_config, resolve_handler
from patchbay.spec._call import CallContext
from patchbay.state import StateStore
from patchbay.transform import cap_result, error_words, transform_response
from patchbay.validate import validate_arguments_async

log = logging.getLogger("patchbay.runtime")
Sleep = Callable[[float], Awaitable[None]]

_DEFAULT_WORDS = {
    ErrorCode.NOT_FOUND: "Nothing was found for that.",
    ErrorCode.UNAUTHORIZED: "The system refused our credentials.",
    ErrorCode.CONFLICT: "That conflicts with the current state.",
    ErrorCode.CLIENT_ERROR: "The system did not accept that request.",
    ErrorCode.RATE_LIMITED: "The system is busy; try again in a moment.",
    ErrorCode.UPSTREAM_UNAVAILABLE: "The system is not answering right now.",
    ErrorCode.TIMEOUT: "The system took too long to answer.",
}


class ToolRuntime:
    """Executes tool calls: validate, build, send through the policies, transform, observe."""

    def __init__(
        self,
        config: Config,
        *,
        transport: Transport | None = None,
        sinks: Sequence[EventSink] | None = None,
        sleep: Sleep = asyncio.sleep,
        handlers: Mapping[str, Callable[..., Awaitable[Any]]] | None = None,
        store: StateStore | None = None,
    ) -> None:
        self.config = config
        self.emitter = Emitter(sinks if sinks is not None else [LoggingSink()])
        # The state store (default: the config's `state:` URL) is closed with the runtime.
        self._pipelines = Pipelines(
            config, self.emitter, transport=transport, sleep=sleep, store=store
        )
        self._handlers: dict[str, Callable[..., Awaitable[Any]]] = dict(handlers or {})
        self._calls: dict[str, CallContext] = {}

    @classmethod
    def from_file(cls, path: str, env: Mapping[str, str] | None = None, **kw: Any) -> ToolRuntime:
        """Load a patchbay.yaml and build a runtime for it."""
        return cls(load_config(path, env=env), **kw)

    @property
    def tools(self) -> Mapping[str, Tool]:
        """The tools this runtime executes, by name."""
        return self.config.tools

    async def __aenter__(self) -> ToolRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Finish background writes, then release connections."""
        await self._pipelines.close()

    def call_context(self, call: CallContext | str | None) -> CallContext:
        """The live context of a phone call, so state carries from one tool call to the next."""
        if call is None:
            call = CallContext(id=f"adhoc-{time.monotonic_ns()}")
        elif isinstance(call, str):
            call = CallContext(id=call)
        known = self._calls.get(call.id)
        if known is None:
            self._calls[call.id] = call
            return call
        if call is not known:
            known.tenant = call.tenant or known.tenant
            known.caller = call.caller or known.caller
            known.state.update(call.state)
        return known

    async def end_call(self, call_id: str) -> None:
        """Release a call's state."""
        self._calls.pop(call_id, None)

    async def call_tool(
        self, name: str, arguments: Mapping[str, Any], call: CallContext | str | None = None
    ) -> ToolResult:
        """Run one tool by name for a call (a convenience over `execute`)."""
        return await self.execute(ToolCall(name, arguments, self.call_context(call)))

    async def execute(self, call: ToolCall) -> ToolResult:
        """Run a tool call and return its result; never raises for anything the call did."""
        started = time.perf_counter()
        ctx = self.call_context(call.call)
        tool = self.config.tools.get(call.tool)
        exchange: Exchange | None = None
        try:
            if tool is None:
                raise InvalidArguments(
                    f"There is no tool named {call.tool}.", fields={"tool": "unknown tool"}
                )
            args = await validate_arguments_async(
                tool,
                call.arguments,
                ctx,
                default_region=self.config.defaults.phone_region,
                hooks=self._pipelines.validators(tool),
            )
            exchange = self._pipelines.exchange(tool, ctx)
            try:
                async with asyncio.timeout(tool.budget_s):
                    value = await self._run(tool, args, exchange)
            except TimeoutError:
                raise DeadlineExceeded("The system took too long to answer.") from None
            result = ToolResult(
                ok=True,
                tool=tool.name,
                call_id=ctx.id,
                result=value,
                say=tool.say.accepted if exchange.notes.get("background") else None,
                meta=self._meta(exchange, started),
            )
        except ToolError as exc:
            result = self._failure(call.tool, tool, ctx, exc, exchange, started)
        except Exception:
            log.exception("tool %s failed unexpectedly", call.tool)
            exc2 = ToolError("Something went wrong on our side.")
            result = self._failure(call.tool, tool, ctx, exc2, exchange, started)
        if self.emitter.active:
            self.emitter.emit(
                Event(
                    kind="tool_call",
                    tool=call.tool,
                    call_id=ctx.id,
                    integration=tool.integration if tool else None,
                    tenant=ctx.tenant,
                    latency_ms=result.meta.get("latency_ms"),
                    attempt=result.meta.get("attempts"),
                    outcome="ok" if result.ok else (result.error.code if result.error else None),
                    extra={"cached": bool(result.meta.get("cached"))},
                )
            )
        return result

    async def _run(self, tool: Tool, args: dict[str, Any], exchange: Exchange) -> Any:
        send = self._pipelines.send(exchange)
        if tool.handler is not None:
            handler = self._handlers.get(tool.name) or resolve_handler(self.config, tool)
            client = HandlerClient(self._pipelines.operations(tool), exchange, send, self._body)
            value = await handler(HandlerContext(exchange.call, client, tool.name), **args)
            return cap_result(transform_response(tool.response, value), tool.response.max_chars)
        request: Request = build_request(tool, exchange.integration, args, exchange.call)
        if request.idempotency_key is not None:
            exchange.notes["idempotency_key"] = request.idempotency_key
        response = await send(request, exchange)
        return transform_response(tool.response, self._body(response, exchange))

    @staticmethod
    def _body(response: Response, exchange: Exchange) -> Any:
        """A 2xx body as JSON, or the ToolError an error status means (in the tool's words)."""
        if response.status < 300:
            if not response.body:
                return None
            return response.json()
        try:
            body = response.json()
        except UpstreamUnavailable:
            body = None
        spec = exchange.tool.response
        probe = error_for_status(response.status, "")
        code, words = error_words(spec, body, _DEFAULT_WORDS.get(probe.code, probe.message))
        raise error_for_status(response.status, words, upstream_code=code)

    @staticmethod
    def _meta(exchange: Exchange | None, started: float) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "attempts": exchange.attempts if exchange else 0,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "cached": exchange.cached if exchange else False,
        }
        if exchange is not None:
            if exchange.stale:
                meta["stale"] = True
            if exchange.deduplicated:
                meta["deduplicated"] = True
            if exchange.tool.idempotency is not None and "idempotency_key" in exchange.notes:
                meta["idempotency_key"] = exchange.notes["idempotency_key"]
            meta.update({k: v for k, v in exchange.notes.items() if k != "idempotency_key"})
        return meta

    def _failure(
        self,
        name: str,
        tool: Tool | None,
        ctx: CallContext,
        exc: ToolError,
        exchange: Exchange | None,
        started: float,
    ) -> ToolResult:
        say = None
        if tool is not None:
            timeout_words = tool.say.timeout if exc.code is ErrorCode.TIMEOUT else None
            if exc.code is not ErrorCode.INVALID_ARGUMENTS:
                say = timeout_words or tool.say.failed
        return ToolResult(
            ok=False,
            tool=name,
            call_id=ctx.id,
            error=ErrorInfo(exc.code.value, exc.message, exc.retryable, exc.fields),
            say=say,
            meta=self._meta(exchange, started),
        )
