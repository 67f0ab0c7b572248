"""Builds, once per integration and tenant, the policy pipeline every request goes through."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from patchbay._errors import DeadlineExceeded, ErrorCode, ToolError
from patchbay.http import (
    Authenticator,
    HttptoolsTransport,
    SecretResolver,
    build_authenticator,
)
from patchbay.http._types import Request, Response, Transport
from patchbay.observe._events import Emitter
from patchbay.policies._base import Exchange, Policy, Send, chain
from patchbay.policies._breaker import BreakerPolicy
from patchbay.policies._cache import CachePolicy
from patchbay.policies._deadline import DeadlinePolicy
from patchbay.policies._idempotency import IdempotencyPolicy
from patchbay.policies._quota import QuotaPolicy
from patchbay.policies._ratelimit import RateLimitPolicy
from patchbay.policies._retry import RetryPolicy
from patchbay.policies._send import AuthPolicy, TransportStep
from patchbay.runtime._handler import Operation, base_headers
from patchbay.runtime._outcomes import Outcomes, describe_response
from patchbay.spec import Config, Integration, Tool
from patchbay.spec._call import CallContext
from patchbay.spec._imports import import_callable
from patchbay.state import StateStore, open_store

log = logging.getLogger("patchbay.runtime")
_UNANSWERED = frozenset({ErrorCode.TIMEOUT, ErrorCode.UPSTREAM_UNAVAILABLE})
Sleep = Callable[[float], Awaitable[None]]


class Pipelines:
    """Per (integration, tenant): effective settings, credentials and the composed pipeline."""

    def __init__(
        self,
        config: Config,
        emitter: Emitter,
        *,
        transport: Transport | None = None,
        sleep: Sleep = asyncio.sleep,
        store: StateStore | None = None,
    ) -> None:
        self._config = config
        self._emitter = emitter
        self._transport = transport or HttptoolsTransport()
        self._secrets = SecretResolver(base_dir=config.base_dir)
        self._sleep = sleep
        self._effective: dict[tuple[str, str | None], Integration] = {}
        self._sends: dict[tuple[str, str | None], Send] = {}
        self._auth: dict[tuple[str, str | None], Authenticator] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._ops: dict[str, tuple[Operation, ...]] = {}
        self._headers: dict[tuple[str, str | None], dict[str, str]] = {}
        # One store and one instance of each stateful policy for every integration and tenant.
        self.store = store if store is not None else open_store(config.state)
        self.outcomes = Outcomes(self.store, emitter)
        self._quota = QuotaPolicy(self.store)
        self._idempotency = IdempotencyPolicy(self.store)
        self._cache = CachePolicy(self.store)
        self._breaker = BreakerPolicy(self.store)
        self._rate_limit = RateLimitPolicy(self.store, sleep=sleep)
        self._validators: dict[str, list[Callable[..., Any]]] = {}

    @property
    def secrets(self) -> SecretResolver:
        """The resolver of secret references (its known values feed log redaction)."""
        return self._secrets

    def integration(self, name: str, tenant: str | None) -> Integration:
        """The integration's settings with the tenant's overrides applied."""
        key = (name, tenant)
        found = self._effective.get(key)
        if found is None:
            base = self._config.integrations[name]
            override = base.tenants.get(tenant) if tenant else None
            found = base
            if override is not None:
                update: dict[str, Any] = {
                    k: v
                    for k, v in (
                        ("base_url", override.base_url),
                        ("rate_limit", override.rate_limit),
                        ("quota", override.quota),
                    )
                    if v is not None
                }
                if override.auth is not None:
                    update["auth"] = override.auth
                elif override.secret is not None and base.auth is not None:
                    update["auth"] = base.auth.model_copy(update={"secret": override.secret})
                found = base.model_copy(update=update)
            self._effective[key] = found
        return found

    def exchange(self, tool: Tool, call: CallContext) -> Exchange:
        """A fresh exchange for one tool execution."""
        return Exchange(
            tool=tool,
            integration=self.integration(tool.integration, call.tenant),
            call=call,
            deadline=time.monotonic() + tool.budget_s,
            emitter=self._emitter,
        )

    def policies(
        self, integration: Integration, auth: Authenticator, *, writes: bool = True
    ) -> list[Policy]:
        """The pipeline, outermost first (DESIGN.md); steps nothing configured are left out.

        deadline, quota, idempotency, cache, retry, breaker, rate limit, auth. The deadline's
        shield and the ledger act on writes only, so the pipeline for reads (`writes=False`)
        goes without them.
        """
        tools = [t for t in self._config.tools.values() if t.integration == integration.name]
        # Reads are refused past the budget by `send` itself; only writes need shielding.
        steps: list[Policy] = [DeadlinePolicy(self._adopt)] if writes else []
        if integration.quota is not None or any(t.quota is not None for t in tools):
            steps.append(self._quota)
        if writes:
            steps.append(self._idempotency)  # handlers may send keys from any tool
        if any(t.cache is not None for t in tools):
            steps.append(self._cache)
        steps.append(RetryPolicy(sleep=self._sleep))
        if integration.breaker is not None:
            steps.append(self._breaker)
        if integration.rate_limit is not None:
            steps.append(self._rate_limit)
        steps.append(AuthPolicy(auth))
        return steps

    def send(self, exchange: Exchange) -> Send:
        """The composed pipeline for the exchange's integration and tenant."""
        key = (exchange.integration.name, exchange.call.tenant)
        found = self._sends.get(key)
        if found is None:
            integration = exchange.integration
            auth = build_authenticator(integration.auth, self._secrets, self._transport)
            self._auth[key] = auth
            step = TransportStep(self._transport)
            reads = chain(self.policies(integration, auth, writes=False), step)
            writes = chain(self.policies(integration, auth), step)
            found = self._sends[key] = _by_method(reads, writes)
        return found

    def operations(self, tool: Tool) -> tuple[Operation, ...]:
        """What a handler of `tool`'s integration may call: declared requests and operations."""
        name = tool.integration
        found = self._ops.get(name)
        if found is None:
            ops = [
                Operation.of(op.method, op.path)
                for op in self._config.integrations[name].operations
            ]
            for other in self._config.tools.values():
                if other.integration == name and other.request is not None:
                    ops.append(Operation.of(other.request.method, other.request.path))
            found = self._ops[name] = tuple(ops)
        return found

    def handler_headers(self, exchange: Exchange) -> dict[str, str]:
        """The headers of every handler request to the exchange's integration and tenant."""
        key = (exchange.integration.name, exchange.call.tenant)
        found = self._headers.get(key)
        if found is None:
            found = self._headers[key] = base_headers(exchange.integration)
        return found

    def validators(self, tool: Tool) -> list[Callable[..., Any]]:
        """The tool's Python validator hooks (imported once)."""
        found = self._validators.get(tool.name)
        if found is None:
            found = [import_callable(ref, self._config.base_dir) for ref in tool.validators]
            self._validators[tool.name] = found
        return found

    def _adopt(self, task: asyncio.Future[Response], request: Request, exchange: Exchange) -> None:
        """Keep a sent write running after its caller gave up, and record how it ended."""
        finish = asyncio.ensure_future(self._finish(task, request, exchange))
        self._background.add(finish)
        finish.add_done_callback(self._background.discard)

    async def _finish(
        self, task: asyncio.Future[Response], request: Request, exchange: Exchange
    ) -> None:
        status: int | None = None
        result: Any = None
        try:
            response = await task
        except asyncio.CancelledError:
            outcome = "cancelled"
        except ToolError as exc:
            # No answer at all (timeouts, resets): nobody knows whether the write happened.
            unanswered = exc.status_code is None and exc.code in _UNANSWERED
            unknown = unanswered or exchange.notes.get("unresolved")
            outcome = "unresolved" if unknown else exc.code.value
        except Exception:
            log.exception("a background write of %s failed unexpectedly", exchange.tool.name)
            outcome = ErrorCode.INTERNAL.value
        else:
            status = response.status
            outcome, result = describe_response(response, exchange.tool)
        extra = {"method": request.method, "path": request.path_template}
        await self.outcomes.record(
            "adopted",
            tool=exchange.tool.name,
            call_id=exchange.call.id,
            key=request.idempotency_key or f"unkeyed-{uuid.uuid4().hex[:12]}",
            outcome=outcome,
            integration=exchange.integration.name,
            tenant=exchange.call.tenant,
            status=status,
            result=result,
            extra=extra,
        )

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait for background writes to finish."""
        if self._background:
            await asyncio.wait(list(self._background), timeout=timeout_s)

    async def close(self) -> None:
        """Finish background writes, close credentials and connections."""
        await self.drain()
        for auth in self._auth.values():
            await auth.close()
        await self._transport.close()
        await self._breaker.drain()
        await self._idempotency.drain()
        await self.store.close()


def _by_method(reads: Send, writes: Send) -> Send:
    def send(request: Request, exchange: Exchange) -> Awaitable[Response]:
        # hands back the chosen pipeline's coroutine: no frame of its own while it runs
        if request.is_write:
            return writes(request, exchange)
        if exchange.deadline <= time.monotonic():
            raise DeadlineExceeded("The answer took too long.")
        return reads(request, exchange)

    return send
