"""What the stateful policies share: responses as stored bytes, key scopes, events, side tasks."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Coroutine
from typing import Any

from patchbay.http._types import Request, Response
from patchbay.observe._events import Event
from patchbay.policies._base import Exchange

log = logging.getLogger("patchbay.policies")


def encode_response(response: Response, **head: Any) -> bytes:
    """A response as one value: a JSON head line (status, headers, `head`), then the raw body."""
    meta = {"s": response.status, "h": dict(response.headers), **head}
    # json.dumps never writes a raw newline, so the first one ends the head.
    return json.dumps(meta, separators=(",", ":")).encode() + b"\n" + response.body


def decode_response(raw: bytes) -> tuple[Response, dict[str, Any]] | None:
    """The response and head fields of `encode_response`; None for bytes it did not write."""
    head, sep, body = raw.partition(b"\n")
    if not sep:
        return None
    try:
        meta = json.loads(head)
        status = int(meta["s"])
        headers = {str(k): str(v) for k, v in dict(meta.get("h") or {}).items()}
    except (ValueError, TypeError, KeyError):
        return None
    return Response(status=status, headers=headers, body=body), meta


def state_tenant(exchange: Exchange) -> str | None:
    """The tenant whose state an exchange uses: the call's, when the integration lists it.

    A tenant the integration does not list (let in by `unknown_tenants: default`) shares the
    integration's own state: a made-up tenant must not get a fresh quota or cache of its own.
    """
    tenant = exchange.call.tenant
    return tenant if tenant is not None and tenant in exchange.integration.tenants else None


def scope(exchange: Exchange) -> str:
    """`integration:tenant`, the prefix that keeps one tenant's state away from another's."""
    return f"{exchange.integration.name}:{state_tenant(exchange) or '-'}"


def tenant_scope(exchange: Exchange) -> str:
    """`integration` or `integration:tenant` when the tenant has an upstream or limits of its own.

    Tenants that share the integration's upstream share its health and its rate: splitting
    them would let N tenants send N times the rate the API accepts.
    """
    tenant = exchange.call.tenant
    override = exchange.integration.tenants.get(tenant) if tenant else None
    if override is not None and (override.base_url is not None or override.rate_limit is not None):
        return f"{exchange.integration.name}:{tenant}"
    return exchange.integration.name


def digest(*parts: object) -> str:
    """A short stable digest: keys stay bounded and never carry arguments such as phone numbers."""
    try:
        text = json.dumps(parts, separators=(",", ":"), sort_keys=True, default=str)
    except (ValueError, TypeError, RecursionError):
        # A handler's body may hold what JSON cannot write (a 5,000-digit integer, keys of
        # mixed types, nesting past the recursion limit): a digest must still come out.
        text = "\x00" + _canonical(parts)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _atom(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return str(value)
        except ValueError:  # past int_max_str_digits; hex has no such limit
            return hex(value)
    if value is None or isinstance(value, bool | float | str):
        return json.dumps(value)  # ASCII: a lone surrogate is written as an escape
    return json.dumps(repr(value))


def _canonical(value: object) -> str:
    """A canonical text of any value, walked with a stack (it may be nested past recursion)."""
    out: list[str] = []
    stack: list[tuple[bool, object]] = [(False, value)]
    while stack:
        literal, node = stack.pop()
        if literal:
            out.append(str(node))
        elif isinstance(node, dict):
            out.append("{")
            stack.append((True, "}"))
            for key in sorted(node, key=_atom, reverse=True):
                stack.append((False, node[key]))
                stack.append((True, _atom(key) + ":"))
        elif isinstance(node, list | tuple):
            out.append("[")
            stack.append((True, "]"))
            stack.extend((False, item) for item in reversed(node))
        else:
            out.append(_atom(node) + ",")
    return "".join(out)


def request_fingerprint(request: Request) -> str:
    """What makes two writes the same write: method, URL, query and body."""
    # A form body as a fifth part, so the fingerprints of JSON writes stay what they were.
    form = () if request.form is None else (request.form,)
    if request.content is not None:  # a raw body (text, XML) as one more part, tagged
        form = (*form, ("content", request.content.hex()))
    return digest(request.method, request.url, sorted(request.query), request.json, *form)


def emit(exchange: Exchange, request: Request | None, outcome: str, **extra: Any) -> None:
    """A `policy` event about this exchange, when anyone listens (and a span event, traced)."""
    if exchange.tracing is not None:
        exchange.tracing.event(outcome, exchange.attempt, extra)
    if not exchange.emitter.active:
        return
    exchange.event(
        Event(
            kind="policy",
            tool=exchange.tool.name,
            call_id=exchange.call.id,
            integration=exchange.integration.name,
            tenant=exchange.call.tenant,
            method=request.method if request is not None else None,
            path=extra.pop("path", request.path_template if request is not None else None),
            attempt=exchange.attempt,
            outcome=outcome,
            extra=extra,
        )
    )


class SideTasks:
    """Bookkeeping that must not hold a caller up (or must outlive its cancellation)."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run `work` on its own; failures are logged, never raised into a tool call."""

        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.warning("background %s failed", what, exc_info=True)

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait for pending side tasks, then cancel whatever is still running."""
        if not self._tasks:
            return
        pending = list(self._tasks)
        _, late = await asyncio.wait(pending, timeout=timeout_s)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError):
                await task
