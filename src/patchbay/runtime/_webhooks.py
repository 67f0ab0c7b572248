"""Webhooks into live calls: accept a signed delivery durably, find its call, act on it.

`accept` verifies the raw body (http/_webhooks.py) and stores the delivery in the inbox
(state/_inbox.py) before anyone answers 2xx; the inbox's worker then calls `process`, which
finds the call (by an id the API echoes, or by a correlation key a tool's answer recorded),
updates its state, renders the words for the agent and publishes them as a call event. For a
call that has ended, `after_call` runs its tool through the durable outbox (once per
delivery) or records a callback request; whatever matches no live call is kept as unmatched.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import jmespath

from patchbay.http._webhooks import WebhookRefused, verify_delivery
from patchbay.observe._events import Emitter, Event
from patchbay.runtime._builtin import CALLBACKS
from patchbay.runtime._calls import CallRegistry, state_text
from patchbay.runtime._outbox import Outbox, OutboxEntry
from patchbay.spec._call import CallContext, call_scoped
from patchbay.spec._model import Config, Tool
from patchbay.spec._webhooks import PLACEHOLDER, AfterCall, CallMatch, secret_refs
from patchbay.state import StateError, StateStore
from patchbay.state._inbox import Inbox, InboxEntry, InboxSettings

log = logging.getLogger("patchbay.webhooks")

CORRELATION_TTL_S = 86400.0  # a correlation key finds its call for a day
_WHOLE = re.compile(r"\{([^{}]*)\}")
Json = dict[str, Any]
Resolve = Callable[[str], Awaitable[str]]
Stored = Callable[[str, str | None], Awaitable[list[Any]]]  # a call's stored events


class CompletionHook(Protocol):
    """Long-running tools' side of completing events (runtime/_completion.py)."""

    def tools_for(self, source: str, event: str) -> list[Tool]: ...

    async def arrived(
        self,
        tools: list[Tool],
        payload: Any,
        tenant: str | None,
        record: Mapping[str, Any],
        *,
        defer: bool = True,
    ) -> bool: ...


class LiveCalls(Protocol):
    """What the runtime offers for delivering call events."""

    async def publish_call_event(
        self,
        call_id: str,
        *,
        tenant: str | None,
        kind: str,
        event: str,
        say: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Any: ...

    # started and not ended (on any replica); sync or async
    def call_is_live(self, call_id: str, tenant: str | None = None) -> bool | Awaitable[bool]: ...


def correlation_key(value: str, tenant: str | None) -> str:
    """Where a correlation value points at its call (namespace `corr`, durable)."""
    return call_scoped("corr", value, tenant)


def _error(code: str, message: str) -> Json:
    return {"error": {"code": code, "message": message}}


def _search(expr: str, data: Any) -> Any:
    try:
        return jmespath.search(expr, data)
    except jmespath.exceptions.JMESPathError:
        return None


def _key_text(value: Any) -> str | None:
    """A correlation value as text; only strings and integers identify something."""
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)


search = _search  # for long-running tools (runtime/_completion.py)
key_text = _key_text


def _lookup(path: str, payload: Any, call: CallContext | None) -> Any:
    parts = path.split(".")
    node: Any
    if parts[0] == "call":
        if call is None:
            return None
        node, parts = call.as_template_scope(), parts[1:]
    else:
        node = payload
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


class Unfilled(Exception):
    """A template names something the delivery or the call does not have."""


def render(template: Any, payload: Any, call: CallContext | None) -> Any:
    """Fill `{data.x}` / `{call.caller}` placeholders; a value that is one placeholder keeps its
    type. Raises Unfilled when one is missing."""
    if isinstance(template, Mapping):
        return {k: render(v, payload, call) for k, v in template.items()}
    if isinstance(template, list | tuple):
        return [render(v, payload, call) for v in template]
    if not isinstance(template, str):
        return template
    whole = _WHOLE.fullmatch(template)
    if whole is not None:
        value = _lookup(whole.group(1), payload, call)
        if value is None:
            raise Unfilled(whole.group(1))
        return value

    def one(match: re.Match[str]) -> str:
        value = _lookup(match.group(1), payload, call)
        if value is None or isinstance(value, Mapping | list):
            raise Unfilled(match.group(1))
        return str(value)

    return PLACEHOLDER.sub(one, template)


class Webhooks:
    """The webhook sources of a runtime: acceptance, correlation, processing."""

    def __init__(
        self,
        config: Config,
        store: StateStore,
        emitter: Emitter,
        resolve: Resolve,
        calls: CallRegistry,
        outbox: Outbox,
        live: LiveCalls,
        stored: Stored,
        settings: InboxSettings | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._emitter = emitter
        self._resolve = resolve
        self._calls = calls
        self._outbox = outbox
        self._live = live
        self._stored = stored
        self.inbox = Inbox(store, self.process, settings)
        self.completions: CompletionHook | None = None  # set by a runtime with such tools

    @property
    def configured(self) -> bool:
        """Whether the config declares any webhook source."""
        return bool(self._config.webhooks)

    def start(self) -> None:
        """Start the inbox worker (when there are sources)."""
        if self.configured:
            self.inbox.start()

    async def accept(
        self, source: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Json]:
        """Verify and store one delivery; (HTTP status, JSON answer) for its sender.

        2xx only once the delivery is stored (a replay: 2xx without effect); 401 for a forged or
        stale one, without saying why (the reason goes to the log); 404 for an unknown source.
        """
        spec = self._config.webhooks.get(source)
        if spec is None:
            return 404, _error("not_found", "There is no webhook source of that name.")
        if len(body) > spec.max_body_bytes:
            return 413, _error(
                "payload_too_large", f"The body is over {spec.max_body_bytes} bytes."
            )
        lowered = {str(k).lower(): str(v) for k, v in headers.items()}
        try:
            secrets = [await self._resolve(ref) for ref in secret_refs(spec.verify)]
        except Exception as exc:  # a missing secret: the sender retries once it is fixed
            log.error("webhook source %s cannot verify: %s", source, type(exc).__name__)
            return 503, _error("unavailable", "The webhook cannot be verified right now.")
        try:
            verified = verify_delivery(spec.verify, secrets, lowered, body)
        except WebhookRefused as refused:
            log.warning("refused a webhook for %s: %s", source, refused.reason)
            return 401, _error("unauthorized", "The webhook signature is not valid.")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return 400, _error("bad_request", "The body is not valid JSON.")
        entry = InboxEntry(source=source, id=verified.id[:200], payload=payload)
        try:
            fresh = await self.inbox.accept(entry)
        except (StateError, UnicodeError):
            log.warning("could not store a webhook for %s; the sender will retry", source)
            return 503, _error("unavailable", "The webhook could not be stored; send it again.")
        self.inbox.start()
        return 200, {"ok": True, "id": entry.id, "duplicate": not fresh}

    async def correlate(self, tool: Tool, answer: Any, call: CallContext) -> None:
        """Record the correlation keys a tool's answer gives, pointing at its call."""
        if not call.linked:
            return
        record = json.dumps({"call": call.id, "tenant": call.tenant, "caller": call.caller})
        for name, expr in tool.correlate.items():
            value = _key_text(_search(expr, answer))
            if value is None:
                continue
            try:
                key = correlation_key(value, call.tenant)
                await self._store.set(key, record.encode(), ttl_s=CORRELATION_TTL_S)
            except (StateError, UnicodeError):
                log.warning("could not record correlation %s of call %s", name, call.id)

    async def unmatched(self) -> list[Json]:
        """Every delivery kept because it matched no live call (or no rule), oldest first."""
        return await self.inbox.unmatched()

    async def _find(self, match: CallMatch, payload: Any) -> CallContext | None:
        tenant = _search(match.tenant, payload) if match.tenant is not None else None
        tenant = tenant if isinstance(tenant, str) and tenant else None
        if match.id is not None:
            call_id = _key_text(_search(match.id, payload))
            return None if call_id is None else CallContext(id=call_id, tenant=tenant)
        assert match.correlate is not None
        value = _key_text(_search(match.correlate, payload))
        if value is None:
            return None
        raw = await self._store.get(correlation_key(value, tenant))
        if raw is None:
            return None
        found = json.loads(raw)
        return CallContext(id=found["call"], tenant=found.get("tenant"), caller=found.get("caller"))

    async def process(self, entry: InboxEntry) -> None:
        """Apply one stored delivery to its call (raises to be retried later)."""
        spec = self._config.webhooks.get(entry.source)
        if spec is None:
            await self._unmatched(entry, None, None, "unknown_source")
            return
        payload = entry.payload
        kind = _search(spec.type, payload)
        rule = spec.on.get(kind) if isinstance(kind, str) else None
        if rule is None or rule.call is None:
            await self._unmatched(entry, kind, None, "no_rule")
            return
        completes = self.completions.tools_for(entry.source, kind) if self.completions else []
        found = await self._find(rule.call, payload)
        if found is None:
            if completes and self.completions is not None:  # before the start's answer
                tenant = _search(rule.call.tenant, payload) if rule.call.tenant else None
                tenant = tenant if isinstance(tenant, str) and tenant else None
                record = {"webhook_id": entry.id, "ref": entry.ref, "applied": False}
                await self.completions.arrived(completes, payload, tenant, record, defer=False)
            await self._unmatched(entry, kind, None, "no_call")
            return
        live = self._live.call_is_live(found.id, found.tenant)
        if not (await live if inspect.isawaitable(live) else live):
            done = await self._after_call(entry, rule.after_call, payload, found)
            await self._unmatched(entry, kind, found, "call_ended", done)
            return
        call = self._calls.context(CallContext(id=found.id, tenant=found.tenant))
        await self._calls.load(call)
        call.caller = call.caller or found.caller
        before = state_text(call)
        data: Json = {}
        for name, expr in rule.state.items():
            value = _search(expr, payload)
            if value is not None:
                call.state[name] = data[name] = value
        await self._calls.persist(call, before)
        say = None
        if rule.say is not None:
            try:
                say = str(render(rule.say, payload, call))
            except Unfilled as missing:
                log.warning("webhook %s: say names %s, which it lacks", entry.ref, missing)
        data["webhook_id"] = entry.id
        event_kind = "webhook"
        if completes and self.completions is not None:
            event_kind = "completion"
            completion = completes[0].completion
            data["tool"] = completes[0].name
            data["result"] = _search(completion.result, payload) if completion else None
            record = {"webhook_id": entry.id, "ref": entry.ref, "applied": True, "say": say}
            if not await self.completions.arrived(completes, payload, call.tenant, record):
                return  # answered inline by the waiting tool, or delivered already
        # Processed before (the process died on the way): publish only if the call's log lacks
        # this delivery's event, so a crash right after publishing does not say it twice.
        started = f"inbox:started:{entry.ref}"
        if not await self._store.set_if_absent(started, b"1", ttl_s=CORRELATION_TTL_S):
            for old in await self._stored(call.id, call.tenant):
                if (
                    getattr(old, "kind", None) == event_kind
                    and old.data.get("webhook_id") == entry.id
                ):
                    return
        await self._live.publish_call_event(
            call.id, tenant=call.tenant, kind=event_kind, event=kind, say=say, data=data
        )

    async def _after_call(
        self, entry: InboxEntry, after: AfterCall | None, payload: Any, call: CallContext
    ) -> Json | None:
        """Run the follow-up of an event for an ended call, at most once per delivery."""
        if after is None:
            return None
        digest = hashlib.sha256(entry.ref.encode()).hexdigest()[:24]
        if after.callback:
            reference = f"cb_wh_{digest}"
            record = {
                "reference": reference,
                "tool": f"webhook:{entry.source}",
                "call_id": call.id,
                "tenant": call.tenant,
                "caller": call.caller,
                "request": {"webhook": entry.source, "id": entry.id},
                "created_at": time.time(),
            }
            await self._store.hset(CALLBACKS, reference, json.dumps(record).encode())
            return {"callback": reference}
        assert after.tool is not None
        ref = f"wh_{digest}"
        marker = f"inbox:after:{entry.ref}"
        if await self._store.get(marker) is None:
            try:
                args = render(after.args, payload, call)
            except Unfilled as missing:
                return {"tool": after.tool, "error": f"after_call.args lacks {missing}"}
            outbox_entry = OutboxEntry(
                ref=ref,
                tool=after.tool,
                args=args,
                call={"id": call.id, "tenant": call.tenant, "caller": call.caller, "state": {}},
                idempotency_key=None,
            )
            await self._outbox.enqueue(outbox_entry)
            await self._store.set(marker, ref.encode(), ttl_s=CORRELATION_TTL_S * 7)
            self._outbox.start()
        return {"tool": after.tool, "reference": ref}

    async def _unmatched(
        self,
        entry: InboxEntry,
        kind: Any,
        call: CallContext | None,
        reason: str,
        after_call: Json | None = None,
    ) -> None:
        record: Json = {
            "source": entry.source,
            "id": entry.id,
            "type": kind if isinstance(kind, str) else None,
            "reason": reason,
            "received_at": entry.received_at,
            "call_id": call.id if call else None,
            "tenant": call.tenant if call else None,
            "after_call": after_call,
            "payload": entry.payload,
        }
        await self.inbox.keep_unmatched(entry, record)
        extra = {"source": entry.source, "type": record["type"], "reason": reason}
        if after_call is not None:
            extra["after_call"] = after_call.get("reference") or after_call.get("callback")
        self._emitter.emit(
            Event(
                kind="webhook_unmatched",
                tool="webhook",
                call_id=record["call_id"],
                tenant=record["tenant"],
                outcome=reason,
                extra=extra,
            )
        )


class WebhookMethods:
    """ToolRuntime's webhook methods (kept here: the runtime's own module is long enough)."""

    _webhooks: Webhooks

    async def accept_webhook(
        self, source: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Json]:
        """Take one webhook delivery for `source` (its raw body and headers): (status, JSON).

        What `POST /webhooks/{source}` answers; an embedded agent mounts it in its own server.
        """
        return await self._webhooks.accept(source, headers, body)

    async def unmatched_webhooks(self) -> list[Json]:
        """Deliveries kept because they matched no live call (or no rule), oldest first."""
        return await self._webhooks.unmatched()

    async def pending_webhooks(self) -> list[InboxEntry]:
        """Deliveries stored but not yet processed, oldest first."""
        return await self._webhooks.inbox.pending()

    def start_webhooks(self) -> None:
        """Start processing stored deliveries (also those a stopped process left behind)."""
        self._webhooks.start()

    async def drain_webhooks(self, timeout_s: float = 10.0) -> bool:
        """Wait until every stored delivery is processed; False if time ran out first."""
        if not self._webhooks.configured:
            return True
        return await self._webhooks.inbox.drain(timeout_s)


def follows_up_with_tools(config: Config) -> bool:
    """Whether some webhook event runs a tool after its call ended (through the outbox)."""
    return any(
        rule.after_call is not None and rule.after_call.tool is not None
        for source in config.webhooks.values()
        for rule in source.on.values()
    )
