"""Builds, once per integration and tenant, the policy pipeline every request goes through."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from patchbay._errors import DeadlineExceeded, TenantRefused
from patchbay.http import (
    Authenticator,
    HttptoolsTransport,
    SecretResolver,
    build_authenticator,
    build_resolver,
)
from patchbay.http._proxy import ProxiedTransport
from patchbay.http._types import Request, Response, Transport
from patchbay.observe._events import Emitter
from patchbay.policies._base import Exchange, Policy, Send, chain
from patchbay.policies._breaker import BreakerPolicy
from patchbay.policies._cache import CachePolicy
from patchbay.policies._deadline import DeadlinePolicy
from patchbay.policies._deprecation import DeprecationWatch
from patchbay.policies._guard import GuardPolicy
from patchbay.policies._idempotency import IdempotencyPolicy
from patchbay.policies._prepare import PreparePolicy
from patchbay.policies._quota import QuotaPolicy
from patchbay.policies._ratelimit import RateLimitPolicy
from patchbay.policies._retry import RetryPolicy
from patchbay.policies._send import AuthPolicy, TransportStep
from patchbay.policies._shared import SideTasks, state_tenant
from patchbay.runtime._handler import Operation, base_headers
from patchbay.runtime._outcomes import Outcomes
from patchbay.runtime._reconcile import Reconciler
from patchbay.runtime._scrub import SecretScrubber
from patchbay.runtime._versions import VersionChooser
from patchbay.spec import Config, Integration, Tool
from patchbay.spec._call import CallContext
from patchbay.spec._imports import import_callable
from patchbay.state import StateStore, open_store
from patchbay.state._batch import batches

if TYPE_CHECKING:
    from patchbay.observe._trace_api import Tracer

log = logging.getLogger("patchbay.runtime")
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
        # env:, file: and the config's secret managers (`secrets:`), with their refresh TTLs
        self._secrets = build_resolver(config)
        self._sleep = sleep
        self._effective: dict[tuple[str, str | None], Integration] = {}
        self._sends: dict[tuple[str, str | None], Send] = {}
        self._auth: dict[tuple[str, str | None], Authenticator] = {}
        self._routed: dict[tuple[str, str | None], Transport] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._ops: dict[str, tuple[Operation, ...]] = {}
        self._headers: dict[tuple[str, str | None, str | None], dict[str, str]] = {}
        # One store and one instance of each stateful policy for every integration and tenant.
        self.store = store if store is not None else open_store(config.state)
        self.outcomes = Outcomes(self.store, emitter)
        self._quota = QuotaPolicy(self.store)
        self._idempotency = IdempotencyPolicy(self.store)
        self._cache = CachePolicy(self.store)
        self._breaker = BreakerPolicy(self.store)
        self._rate_limit = RateLimitPolicy(self.store, sleep=sleep)
        # Tools with a guard count per tenant; a builtin tool knows the config's tenants only.
        tenants = {t for i in config.integrations.values() for t in i.tenants}
        tenants.update(config.gateway.auth.tenants)
        self._guard = GuardPolicy(self.store, emitter, tenants=tenants)
        # On a store that batches (Redis), what the policies ask the store for on the way in
        # goes as one round trip; each policy still decides at its own step.
        self._ahead_side = SideTasks()
        self._prepare: PreparePolicy | None = None
        if batches(self.store):
            planners = (self._quota, self._idempotency, self._cache, self._breaker)
            self._prepare = PreparePolicy(
                self.store,
                (*planners, self._rate_limit),
                self._ahead_side,
                ended=self._breaker.flush_soon,  # successes it holds ride with the next batch
            )
        self._validators: dict[str, list[Callable[..., Any]]] = {}
        # Spans of attempts and policy events on every exchange (set by the runtime).
        self.tracing: Tracer | None = None
        self._confirms: dict[tuple[str, str | None], Send] = {}
        self._versions = VersionChooser()
        self.deprecations = DeprecationWatch()
        # Applied to every result before the LLM reads it: upstreams may echo credentials.
        self.scrub = SecretScrubber(config).clean
        self.reconciler = Reconciler(self.outcomes, self.confirm_send, self.scrub)

    @property
    def secrets(self) -> SecretResolver:
        """The resolver of secret references (its known values feed log redaction)."""
        return self._secrets

    def integration(self, name: str, tenant: str | None) -> Integration:
        """The integration's settings with the tenant's overrides applied.

        Raises TenantRefused for a tenant the integration does not list, unless it says
        `unknown_tenants: default`: then the tenant gets the integration's own settings.
        """
        found = self._effective.get((name, tenant))
        if found is not None:
            return found  # only listed tenants (and None) are ever keys
        base = self._config.integrations[name]
        if tenant is not None and tenant not in base.tenants:
            if base.unknown_tenants == "refuse":
                raise _refused(base, tenant)
            tenant = None  # one shared entry, however many tenants are made up
        key = (name, tenant)
        found = self._effective.get(key)
        if found is None:
            override = base.tenants.get(tenant) if tenant else None
            found = base
            if override is not None:
                update: dict[str, Any] = {
                    k: v
                    for k, v in (
                        ("base_url", override.base_url),
                        ("rate_limit", override.rate_limit),
                        ("quota", override.quota),
                        ("version", override.version),
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

    def guard(self, tool: Tool, call: CallContext) -> Awaitable[None]:
        """Count a call of a tool with a `guard` before it does anything; may refuse it.

        The tenant is checked first: one the integration refuses is refused as always, and is
        not counted against the tenant it falls back to.
        """
        integration = self.integration(tool.integration, call.tenant) if tool.integration else None
        return self._guard.check(tool, call, integration)

    def exchange(self, tool: Tool, call: CallContext) -> Exchange:
        """A fresh exchange for one tool execution, at the version chosen for its call."""
        integration = self.integration(tool.integration, call.tenant)
        integration, version = self._versions.choose(integration, call)
        return Exchange(
            tool=tool,
            integration=integration,
            call=call,
            deadline=time.monotonic() + tool.budget_s,
            emitter=self._emitter,
            version=version,
            tracing=self.tracing,
        )

    def policies(
        self, integration: Integration, auth: Authenticator, *, writes: bool = True
    ) -> list[Policy]:
        """The pipeline, outermost first; steps nothing configured are left out.

        deadline, quota, idempotency, cache, retry, breaker, rate limit, auth. The deadline's
        shield and the ledger act on writes only, so the pipeline for reads (`writes=False`)
        goes without them.
        """
        tools = [t for t in self._config.tools.values() if t.integration == integration.name]
        # Reads are refused past the budget by `send` itself; only writes need shielding.
        steps: list[Policy] = [DeadlinePolicy(self.reconciler.adopt)] if writes else []
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
        if self._prepare is not None:
            steps.insert(0, self._prepare)
        return steps

    def send(self, exchange: Exchange) -> Send:
        """The composed pipeline for the exchange's integration and tenant."""
        key = (exchange.integration.name, state_tenant(exchange))
        found = self._sends.get(key)
        if found is None:
            integration = exchange.integration
            transport = self._routed[key] = self._transport_for(integration)
            auth = build_authenticator(integration.auth, self._secrets, transport)
            self._auth[key] = auth
            step = TransportStep(transport, self.deprecations)
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
        # keyed by version too: a canary call's handler sends the canary's version header
        key = (exchange.integration.name, state_tenant(exchange), exchange.version)
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

    def confirm_send(self, exchange: Exchange) -> Send:
        """One attempt of a write being confirmed: ledger, breaker, limiter, auth, transport.

        No deadline shield and no retry (the reconciler paces its own resends), no quota (the
        write was counted when it was first asked for).
        """
        key = (exchange.integration.name, state_tenant(exchange))
        found = self._confirms.get(key)
        if found is None:
            self.send(exchange)  # builds the credentials of this integration and tenant
            integration = exchange.integration
            steps: list[Policy] = [self._idempotency]
            if integration.breaker is not None:
                steps.append(self._breaker)
            if integration.rate_limit is not None:
                steps.append(self._rate_limit)
            steps.append(AuthPolicy(self._auth[key]))
            step = TransportStep(self._routed[key], self.deprecations)
            found = self._confirms[key] = chain(steps, step)
        return found

    def _transport_for(self, integration: Integration) -> Transport:
        """The shared transport, through the integration's proxy (or the environment's)."""
        setting, env = integration.proxy, self._config.proxy_env
        if not ProxiedTransport.wanted(setting, env):
            return self._transport
        own = setting if setting is not False else None
        return ProxiedTransport(self._transport, own, env, self._secrets)

    def reconcile(self, request: Request, exchange: Exchange) -> None:
        """Confirm a write left in doubt in the background (same key) and record its outcome."""
        self.reconciler.reconcile(request, exchange)

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait for background writes to finish (confirmations by resending included)."""
        await self.reconciler.drain(timeout_s)

    async def close(self) -> None:
        """Finish background writes, close credentials and connections."""
        await self.reconciler.close()
        for auth in self._auth.values():
            await auth.close()
        await self._transport.close()
        await self._breaker.drain()
        await self._idempotency.drain()
        await self._ahead_side.drain()
        await self.store.close()


def _refused(integration: Integration, tenant: str) -> TenantRefused:
    # The name is caller-supplied: the operator's log shows a bounded repr, the LLM none of it.
    log.warning(
        "refused a call for tenant %.80r: integration %s does not list it "
        "(unknown_tenants: refuse)",
        tenant,
        integration.name,
    )
    return TenantRefused(
        f"This call's tenant is not set up to use {integration.name}, so nothing was sent; "
        "do not try again, tell the caller it cannot be done on this line."
    )


def _by_method(reads: Send, writes: Send) -> Send:
    def send(request: Request, exchange: Exchange) -> Awaitable[Response]:
        # hands back the chosen pipeline's coroutine: no frame of its own while it runs
        if request.is_write:
            return writes(request, exchange)
        if exchange.deadline <= time.monotonic():
            raise DeadlineExceeded("The answer took too long.")
        return reads(request, exchange)

    return send
