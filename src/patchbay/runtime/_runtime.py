"""ToolRuntime: the one place a tool call becomes a ToolResult, whatever happens on the way."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from patchbay._errors import (
    DeadlineExceeded,
    ErrorCode,
    InvalidArguments,
    OutcomePending,
    SecretError,
    ToolError,
    UpstreamUnavailable,
)
from patchbay.http._build import build_request
from patchbay.http._types import Request, Response, Transport
from patchbay.observe._configured import ConfiguredSinks
from patchbay.observe._events import Emitter, Event, EventSink
from patchbay.observe._observer import CallObserver
from patchbay.observe._otel import OtlpObserver
from patchbay.observe._sinks import LoggingSink
from patchbay.policies._base import Exchange
from patchbay.policies._classify import error_for_status
from patchbay.runtime._builtin import CALLBACK_WORDS, list_callback_requests, take_callback_request
from patchbay.runtime._callevents import CallEventMethods, CallEvents
from patchbay.runtime._calls import (
    CallRegistry,
    args_key,
    named_call,
    prefetch_arguments,
    state_text,
)
from patchbay.runtime._completion import Completions
from patchbay.runtime._contracts import ContractChecker
from patchbay.runtime._failure import CONFIRMING as _CONFIRMING
from patchbay.runtime._failure import DEFAULT_WORDS as _DEFAULT_WORDS
from patchbay.runtime._failure import UNCONFIRMED as _UNCONFIRMED
from patchbay.runtime._failure import error_say as _words
from patchbay.runtime._graphql import graphql_answer, mark_incomplete
from patchbay.runtime._handler import HandlerClient, HandlerContext
from patchbay.runtime._logs import log_exception, redacted
from patchbay.runtime._outbox import Outbox, OutboxEntry, new_entry
from patchbay.runtime._pipeline import Pipelines
from patchbay.runtime._result import ErrorInfo, ToolCall, ToolResult
from patchbay.runtime._traced import traced
from patchbay.runtime._webhooks import WebhookMethods, Webhooks, follows_up_with_tools
from patchbay.spec import Config, Tool, load_config, resolve_handler
from patchbay.spec._call import CallContext
from patchbay.state import MemoryStore, StateError, StateStore
from patchbay.transform import error_words, transform_response
from patchbay.validate import validate_arguments_async

if TYPE_CHECKING:  # prometheus_client is imported only when metrics are asked for
    from patchbay.observe._metrics import PrometheusSink

log = logging.getLogger("patchbay.runtime")
Sleep = Callable[[float], Awaitable[None]]


def _cut(name: str) -> str:
    """A tool name as the caller gave it, cut to a length no real tool name exceeds."""
    return name if len(name) <= 64 else name[:64] + "…"


class _Via(enum.Enum):
    """Who asked for an execution: the LLM, the call-start prefetch, or the outbox worker."""

    LLM = "llm"
    PREFETCH = "prefetch"
    OUTBOX = "outbox"


class ToolRuntime(WebhookMethods, CallEventMethods):
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
        background_worker: bool = True,
        otel: OtlpObserver | None = None,
    ) -> None:
        self.config = config
        self.emitter = Emitter(sinks if sinks is not None else [LoggingSink()])
        # JSON lines, event logs, Prometheus and OTLP of `observe` (none unless it asks).
        self._sinks = ConfiguredSinks.build(
            config, logs_events=sinks is None, traced=otel is not None
        )
        for sink in self._sinks.sinks:
            self.emitter.add(sink)
        # The state store (default: the config's `state:` URL) is closed with the runtime.
        self._pipelines = Pipelines(
            config, self.emitter, transport=transport, sleep=sleep, store=store
        )
        self._handlers: dict[str, Callable[..., Awaitable[Any]]] = dict(handlers or {})
        # OpenTelemetry (`otlp_observer`): spans of calls and attempts, OTel metrics; None: off.
        self._otel = otel
        self.tracing = self._pipelines.tracing = otel.tracing if otel is not None else None
        if otel is not None and otel.metrics is not None:
            self.emitter.add(otel.metrics)
        self._contracts = ContractChecker()  # response.expect / root, checked on every answer
        self._contracts.prepare(config.tools.values())
        # Body logs and the audit trail of `observe`: None (and no cost per call) when off.
        self._observer = CallObserver.build(config.observe, config.base_dir, self._reveal)
        if self._observer is not None:
            self.emitter.add(self._observer)
        self._calls = CallRegistry(self._pipelines.store)
        # Call events: kept per call in the store, delivered here and to the other replicas.
        self._events = CallEvents(self._pipelines.store)
        self._pipelines.outcomes.listener = self._outcome_event
        self._outbox = Outbox(
            self._pipelines.store, self._pipelines.outcomes, self._perform, self._lease_span
        )
        # False for replicas that only accept background writes while workers elsewhere send.
        self._worker = background_worker and (
            any(t.mode == "background" for t in config.tools.values())
            or follows_up_with_tools(config)  # webhooks' after_call tools go through the outbox
        )
        # Webhooks into live calls: inbox, correlation keys, processing (runtime/_webhooks.py).
        hooks = (self._reveal, self._calls, self._outbox, self, self._events.stored)
        self._webhooks = Webhooks(config, self.store, self.emitter, *hooks)
        self._completions = Completions(config, self.store, self._events.notifier, self._calls)
        self._webhooks.completions = self._completions  # long-running tools (`completion`)

    @classmethod
    def from_file(cls, path: str, env: Mapping[str, str] | None = None, **kw: Any) -> ToolRuntime:
        """Load a patchbay.yaml and build a runtime for it."""
        return cls(load_config(path, env=env), **kw)

    @property
    def tools(self) -> Mapping[str, Tool]:
        """The tools this runtime executes, by name."""
        return self.config.tools

    @property
    def metrics(self) -> PrometheusSink | None:
        """The metrics `observe.prometheus` keeps (the gateway serves them), else None."""
        return self._sinks.metrics

    @property
    def store(self) -> StateStore:
        """The state store shared by the policies, call state, the outbox and callbacks."""
        return self._pipelines.store

    async def __aenter__(self) -> ToolRuntime:
        self._start_worker()
        self._webhooks.start()  # deliveries stored but not processed yet (also by others)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _start_worker(self) -> None:
        if self._worker:
            self._outbox.start()

    async def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait for background work: outbox writes (those waiting out a backoff too), writes
        finishing after their budget and writes being confirmed. False if time ran out first.
        """
        deadline = time.monotonic() + timeout_s
        done = True
        if self._worker:
            done = await self._outbox.drain(timeout_s)
        await self._pipelines.drain(max(0.0, deadline - time.monotonic()))
        return done and not self._pipelines.reconciler.busy

    async def close(self) -> None:
        """Stop prefetches and the outbox worker, finish background writes, release connections.

        Outbox entries not yet sent stay in the store for the next runtime to send; a memory
        store has no next runtime, so its entries are sent first (within 30 s).
        """
        await self._calls.close()
        await self._webhooks.inbox.close()
        memory = isinstance(self.store, MemoryStore)
        if self._worker and memory and not await self._outbox.drain(30.0):
            refs = [e.ref for e in await self._outbox.pending()]
            log.error("background writes lost with the memory state store: %s", refs)
        await self._outbox.close()
        await self._events.close()
        await self._pipelines.close()
        if self._otel is not None:
            await self._otel.flush()
        if self._observer is not None:
            self._observer.close()
        self._sinks.close()

    async def _reveal(self, ref: str) -> str:
        """The value of a secret reference, through the runtime's resolver and its providers."""
        return (await self._pipelines.secrets.resolve(ref)).reveal()

    def call_context(self, call: CallContext | str | None) -> CallContext:
        """The live context of a phone call, so state carries from one tool call to the next.

        A call is its tenant's call of that id (a bare id: the call without a tenant).
        """
        return self._calls.context(call)

    async def start_call(self, call: CallContext | str) -> None:
        """A call began: load its state and start its `prefetch` tools alongside the greeting.

        A later tool call with the same arguments gets the prefetched answer without a request.
        """
        ctx = self.call_context(call)
        await self._calls.load(ctx)
        marking = self._events.mark_live(ctx.id, ctx.tenant)
        if marking is not None:
            await marking  # live for webhooks on every replica once the call has started
        self._start_worker()
        for tool in self.config.tools.values():
            if not tool.prefetch:
                continue
            raw = prefetch_arguments(tool, ctx)
            if raw is None:
                continue  # the call does not know the arguments (no caller number, say)
            try:
                args = await self._validate(tool, raw, ctx)
            except ToolError as exc:
                why = redacted(exc.message)  # validation words may quote the caller's number
                log.info("not prefetching %s for call %s: %s", tool.name, ctx.id, why)
                continue
            task = asyncio.get_running_loop().create_task(
                self._run(tool.name, args, ctx, _Via.PREFETCH)
            )
            self._calls.add_prefetch(ctx, tool.name, args_key(args), task)

    async def end_call(self, call_id: CallContext | str, tenant: str | None = None) -> None:
        """The call ended: cancel unfinished prefetches and release its state (here and shared).

        The call is named by its context, or by its id and `tenant` (None: the call without a
        tenant); another tenant's call of the same id goes on.
        """
        owner, cid = named_call(call_id, tenant)
        await self._calls.end(cid, owner)
        await self._events.end(cid, owner)  # ends every stream of its events, on every replica

    async def callback_requests(self) -> list[dict[str, Any]]:
        """Every request taken by a `builtin: callback_request` tool, oldest first."""
        return await list_callback_requests(self.store)

    async def background_outcome(
        self, call_id: CallContext | str, key: str, tenant: str | None = None
    ) -> dict[str, Any] | None:
        """How a call's background write ended, by idempotency key or outbox reference.

        The call is named as for `end_call`: a tenant reads the outcomes of its own calls only.
        """
        owner, cid = named_call(call_id, tenant)
        return await self._pipelines.outcomes.get(cid, key, owner)

    async def pending_background(self) -> list[OutboxEntry]:
        """Background writes accepted but not yet performed, oldest first."""
        return await self._outbox.pending()

    def call_tool(
        self, name: str, arguments: Mapping[str, Any], call: CallContext | str | None = None
    ) -> Coroutine[Any, Any, ToolResult]:
        """Run one tool by name for a call (a convenience over `execute`; await it)."""
        # A plain function handing back the execution's coroutine: one frame less per await.
        return self._run(name, arguments, self.call_context(call), _Via.LLM)

    def execute(self, call: ToolCall) -> Coroutine[Any, Any, ToolResult]:
        """Run a tool call and return its result (await it); never raises for what the call did."""
        # A plain function handing back the execution's coroutine: one frame less per await.
        ctx = self.call_context(call.call)
        return self._run(call.tool, call.arguments, ctx, _Via.LLM, call.tool_call_id)

    async def _validate(self, tool: Tool, arguments: Mapping[str, Any], ctx: CallContext) -> Any:
        return await validate_arguments_async(
            tool,
            arguments,
            ctx,
            default_region=self.config.defaults.phone_region,
            hooks=self._pipelines.validators(tool),
        )

    def _run(
        self,
        name: str,
        arguments: Mapping[str, Any],
        ctx: CallContext,
        via: _Via,
        tool_call_id: str | None = None,
    ) -> Coroutine[Any, Any, ToolResult]:
        """The execution's coroutine, inside an `execute_tool` span when tracing is on."""
        work = self._execute(name, arguments, ctx, via)
        if self.tracing is None:
            return work
        tool = self.config.tools.get(name)
        return traced(self.tracing, work, name, tool, ctx, tool_call_id)

    async def _execute(
        self, name: str, arguments: Mapping[str, Any], ctx: CallContext, via: _Via
    ) -> ToolResult:
        started = time.perf_counter()
        if via is _Via.LLM:
            await self._calls.load(ctx)
            self._events.mark_live(ctx.id, ctx.tenant)
            self._start_worker()
        tool = self.config.tools.get(name)
        exchange: Exchange | None = None
        # Only handlers write call state; the outbox works on a snapshot of the call.
        keep = tool is not None and tool.handler is not None and via is not _Via.OUTBOX
        before = state_text(ctx) if keep else None
        prefetched: ToolResult | None = None
        try:
            if tool is None:
                raise InvalidArguments(
                    f"There is no tool named {_cut(name)}.", fields={"tool": "unknown tool"}
                )
            args = await self._validate(tool, arguments, ctx)
            say = None
            budget_end = time.monotonic() + tool.budget_s
            try:
                async with asyncio.timeout(tool.budget_s):
                    # What the agent asks for is counted (prefetches and outbox sends are not:
                    # a background write was counted when it was accepted); nothing sent yet.
                    if tool.guard is not None and via is _Via.LLM:
                        await self._pipelines.guard(tool, ctx)
                    if via is _Via.LLM and tool.prefetch and self._calls.prefetching(ctx):
                        prefetched = await self._prefetched(tool, args, ctx)
                    if prefetched is not None:
                        value = prefetched.result
                    elif tool.builtin is not None:
                        value = await take_callback_request(self.store, tool, args, ctx)
                        say = tool.say.accepted or CALLBACK_WORDS
                    elif tool.mode == "background" and via is not _Via.OUTBOX:
                        value = await self._enqueue(tool, args, ctx)
                        say = tool.say.accepted
                    else:
                        exchange = self._pipelines.exchange(tool, ctx)
                        exchange.deadline = min(exchange.deadline, budget_end)
                        answer = await self._start(tool, args, exchange)
                        value = self._answer(tool, answer, exchange, via is not _Via.OUTBOX)
            except TimeoutError:
                raise DeadlineExceeded("The system took too long to answer.") from None
            result = ToolResult(
                ok=True,
                tool=tool.name,
                call_id=ctx.id,
                result=value,
                say=prefetched.say if prefetched is not None else say,
                meta=self._meta(exchange, started),
            )
            if prefetched is not None:
                result = replace(result, meta={**result.meta, "prefetched": True})
        except ToolError as exc:
            result = self._failure(name, tool, ctx, exc, exchange, started, via)
        except SecretError as exc:
            # A reference that stopped resolving (unset variable, unreadable file): one line
            # naming the reference, never a value, and no traceback for a configuration fault.
            log.error("tool %s cannot run: %s", _cut(name), exc)
            exc2 = ToolError("The credentials for this system are not available right now.")
            result = self._failure(name, tool, ctx, exc2, exchange, started, via)
        except Exception as exc:
            log_exception(log, exc, "tool %s failed unexpectedly", _cut(name))
            exc2 = ToolError("Something went wrong on our side.")
            result = self._failure(name, tool, ctx, exc2, exchange, started, via)
        if before is not None:
            await self._calls.persist(ctx, before)
        if result.ok and tool is not None and tool.completion and via is not _Via.OUTBOX:
            left = tool.budget_s - (time.perf_counter() - started)  # waits for its webhook
            result = await self._completions.settle(
                tool, result, ctx, left, self._webhooks.correlate
            )
        elif result.ok and tool is not None and tool.correlate:  # webhooks find the call by these
            await self._webhooks.correlate(tool, result.result, ctx)
        if self.emitter.active:
            extra: dict[str, Any] = {"cached": bool(result.meta.get("cached"))}
            if via is not _Via.LLM:
                extra["via"] = via.value
            if prefetched is not None:
                extra["prefetched"] = True
            if exchange is not None and exchange.version is not None:
                extra["version"] = exchange.version  # the API version this call spoke
            event = Event(
                kind="tool_call",
                tool=name,
                call_id=ctx.id,
                integration=tool.integration or None if tool else None,
                tenant=ctx.tenant,
                latency_ms=result.meta.get("latency_ms"),
                attempt=result.meta.get("attempts"),
                outcome="ok" if result.ok else (result.error.code if result.error else None),
                extra=extra,
            )
            self.emitter.emit(event)
            if self._observer is not None:
                answer = result.error.to_dict() if result.error else result.result
                who = {"platform": ctx.platform, "credential": ctx.credential}
                await self._observer.finished(event, tool, arguments, answer, who)
        return result

    async def _prefetched(
        self, tool: Tool, args: dict[str, Any], ctx: CallContext
    ) -> ToolResult | None:
        """The call-start answer for these arguments, if it came back ok (else: ask again)."""
        task = self._calls.take_prefetch(ctx, tool.name, args_key(args))
        if task is None:
            return None
        # Shielded: a caller who gives up must not cancel what the next one could use.
        found = await asyncio.shield(task)
        return found if found.ok else None

    async def _enqueue(self, tool: Tool, args: dict[str, Any], ctx: CallContext) -> Any:
        """Accept a background write: store it in the outbox and answer with its reference."""
        key = None
        # Refuses a tenant the integration does not serve now, not when the write is sent.
        integration = self._pipelines.integration(tool.integration, ctx.tenant)
        if tool.request is not None or tool.graphql is not None:
            # Built now so a template the call cannot fill fails while the caller can fix it.
            key = build_request(tool, integration, args, ctx).idempotency_key
        entry = new_entry(tool.name, args, ctx, key)
        try:
            await self._outbox.enqueue(entry)
        except StateError:
            raise UpstreamUnavailable(
                "The request could not be queued right now.", retryable=True
            ) from None
        return {"status": "accepted", "reference": entry.ref}

    async def _perform(self, entry: OutboxEntry) -> ToolResult:
        """Send one outbox write through the normal pipeline, as the call was when accepted."""
        return await self._run(entry.tool, entry.args, entry.context(), _Via.OUTBOX)

    def _lease_span(self, name: str) -> float:
        tool = self.config.tools.get(name)
        return (tool.budget_s if tool else 5.0) + self._outbox.settings.lease_margin_s

    def _start(self, tool: Tool, args: dict[str, Any], exchange: Exchange) -> Awaitable[Any]:
        """The handler's coroutine, or the declared request's through the pipeline.

        A plain function handing back the coroutine: no frame of its own while it runs.
        """
        send = self._pipelines.send(exchange)
        if tool.handler is not None:
            handler = self._handlers.get(tool.name)
            if handler is None:
                handler = self._handlers[tool.name] = resolve_handler(self.config, tool)
            pipes = self._pipelines
            client = HandlerClient(
                pipes.operations(tool), exchange, send, self._body, pipes.handler_headers(exchange)
            )
            return handler(HandlerContext(exchange.call, client, tool.name), **args)
        request: Request = build_request(tool, exchange.integration, args, exchange.call)
        if request.idempotency_key is not None:
            exchange.notes["idempotency_key"] = request.idempotency_key
        return send(request, exchange)

    def _answer(self, tool: Tool, answer: Any, exchange: Exchange, enforce: bool = True) -> Any:
        """What `_start`'s work gave, for the LLM: a handler's value or the response's body.

        Checked against the tool's response contract first (`enforce`: a mismatch may refuse).
        """
        body = answer if tool.handler is not None else self._body(answer, exchange)
        self._contracts.check(tool, body, exchange, enforce=enforce)
        # transform_response converts and caps a handler's output too
        value = transform_response(tool.response, body)
        if tool.graphql is not None:  # a partial answer says what it is missing
            value = mark_incomplete(value, exchange, _DEFAULT_WORDS)
        return self._pipelines.scrub(value)

    @staticmethod
    def _body(response: Response, exchange: Exchange) -> Any:
        """A 2xx body as JSON, or the ToolError an error status means (in the tool's words)."""
        if exchange.tool.graphql is not None:
            return graphql_answer(response, exchange, _DEFAULT_WORDS)
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
        via: _Via,
    ) -> ToolResult:
        if exchange is not None:
            pending = self._pending(exchange, via)  # starts the write's confirmation
            if pending is not None and exc.code is not ErrorCode.PENDING:
                exc = pending
        say = None
        if tool is not None:
            wrote = exchange is not None and exchange.sent and tool.is_write
            say = _words(tool.say, exc.code, wrote)
        return ToolResult(
            ok=False,
            tool=name,
            call_id=ctx.id,
            error=ErrorInfo(exc.code.value, exc.message, exc.retryable, exc.fields),
            say=say,
            meta=self._meta(exchange, started),
        )

    def _pending(self, exchange: Exchange, via: _Via) -> OutcomePending | None:
        """The `pending` error of a write that may have reached the upstream, else None.

        Its confirmation starts here, unless the write already finishes in the background or
        the outbox (which resends it itself) asked for it.
        """
        request = exchange.unsettled
        handed_over = bool(exchange.notes.get("finishing_in_background"))
        if request is None and not handed_over:
            return None
        if request is not None and not handed_over and via is not _Via.OUTBOX:
            self._pipelines.reconcile(request, exchange)
        keyed = handed_over or (request is not None and request.idempotency_key is not None)
        return OutcomePending(_CONFIRMING if keyed else _UNCONFIRMED)
