"""The context of one phone call, shared by every tool call made during it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

# The id prefix of a context made up for a tool call that names no call: it shares no state.
ADHOC_PREFIX = "adhoc-"


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
    # Who the gateway let in for the latest request of this call, for the audit trail: the
    # platform route (tools, vapi, retell, elevenlabs, mcp) and the credential's config name.
    platform: str | None = None
    credential: str | None = None

    @property
    def linked(self) -> bool:
        """Whether the tool call named its call, so state from earlier tool calls is here."""
        return not self.id.startswith(ADHOC_PREFIX)

    def as_template_scope(self) -> dict[str, Any]:
        """The `call` object seen by templates and rules."""
        return {"id": self.id, "tenant": self.tenant, "caller": self.caller, "state": self.state}


def call_scoped(prefix: str, call_id: str, tenant: str | None) -> str:
    """A store key of one call's data: `prefix:id` without a tenant, `prefix@tenant:id` with one.

    A call id is unique within its tenant only, so per-call data is keyed by both. The tenant
    is percent-encoded: a ':' or '@' in its name cannot move the boundary, and no tenant's key
    equals a key of a call without one (whose keys stay as they were before tenants).
    """
    if tenant is None:
        return f"{prefix}:{call_id}"
    return f"{prefix}@{quote(tenant, safe='')}:{call_id}"


def unlinked_words(name: str) -> str:
    """Why `call.state.<name>` is absent from a tool call that named no call, and the remedy."""
    return (
        f"{name} is not known because this tool call is not linked to a call: what earlier "
        "tool calls learned is kept per call, so send the same call id with every tool call "
        '(the body\'s call.id; over MCP _meta "patchbay/call_id" or the X-Call-Id header)'
    )
