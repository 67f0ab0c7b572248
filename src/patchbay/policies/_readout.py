"""Read-only views of policy state for operators: a breaker's state, as every replica sees it."""

from __future__ import annotations

import time
from dataclasses import dataclass

from patchbay.policies._breaker import _View
from patchbay.spec._model import Integration
from patchbay.state._protocol import StateStore

__all__ = ["BreakerReading", "breaker_scopes", "read_breaker"]


@dataclass(frozen=True, slots=True)
class BreakerReading:
    """One breaker's shared state: closed, open (until a wall-clock time) or half-open."""

    scope: str  # `integration` or `integration:tenant` (see `tenant_scope`)
    endpoint: str  # "METHOD /path" with `per_endpoint`, else "*"
    state: str
    open_until: float | None = None


def breaker_scopes(integration: Integration) -> list[tuple[str, str | None]]:
    """(scope, tenant) of each breaker (or rate limit) the integration keeps: its own, shared by
    tenants on its upstream, and one per tenant with an upstream or limits of its own."""
    scopes: list[tuple[str, str | None]] = [(integration.name, None)]
    for tenant, override in integration.tenants.items():
        if override.base_url is not None or override.rate_limit is not None:
            scopes.append((f"{integration.name}:{tenant}", tenant))
    return scopes


async def read_breaker(
    store: StateStore, scope: str, endpoint: str = "*", *, now: float | None = None
) -> BreakerReading:
    """The state the breaker of `scope` (and `endpoint`) has in the shared store.

    The same key and reading as `BreakerPolicy` (whose open periods run on the wall clock).
    """
    key = f"brk:{scope}" if endpoint == "*" else f"brk:{scope}:{endpoint}"
    view = _View.parse(await store.get(key), time.monotonic())
    if view.until is None:
        return BreakerReading(scope, endpoint, "closed")
    clock = time.time() if now is None else now
    state = "open" if clock < view.until else "half_open"
    return BreakerReading(scope, endpoint, state, view.until)
