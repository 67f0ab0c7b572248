"""The context of one phone call, shared by every tool call made during it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class CallContext:
    """Who is calling, for which tenant, and what earlier tool calls of this call learned.

    `state` is the call's scratch space (e.g. the customer id a lookup found, used by a later
    payment's body as `{call.state.customer_id}`); the runtime persists it between tool calls.
    """

    id: str
    tenant: str | None = None
    caller: str | None = None
    state: dict[str, Any] = field(default_factory=dict)

    def as_template_scope(self) -> dict[str, Any]:
        """The `call` object seen by templates and rules."""
        return {"id": self.id, "tenant": self.tenant, "caller": self.caller, "state": self.state}
