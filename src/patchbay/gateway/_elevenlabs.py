"""ElevenLabs server (webhook) tools: the body's properties in, the result out.

An ElevenLabs webhook tool sends its `request_body_schema` properties as one flat JSON object:
the ones the LLM fills, and the ones bound to dynamic variables, which ElevenLabs fills itself.
patchbay's export binds `system__conversation_id` (the call) and `system__caller_id` (the
caller's number) to properties of the same name; they are taken out before the tool sees the
arguments. Headers `X-Patchbay-Call-Id` / `X-Patchbay-Caller` (a header bound to a dynamic
variable) and the query string work too.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from patchbay.gateway._http import first_text, text_or_none
from patchbay.spec import CallContext

__all__ = ["CALLER_VARIABLE", "CALL_ID_VARIABLE", "elevenlabs_call"]

CALL_ID_VARIABLE = "system__conversation_id"
CALLER_VARIABLE = "system__caller_id"
_SYSTEM = "system__"


def elevenlabs_call(
    params: Collection[str],
    body: Mapping[str, Any],
    query: Mapping[str, str],
    headers: Mapping[str, str],
    tenant: str | None,
) -> tuple[dict[str, Any], CallContext | None]:
    """The tool's arguments and the conversation they belong to (None: no conversation named)."""
    arguments: dict[str, Any] = {}
    system: dict[str, Any] = {}
    for key, value in body.items():
        # system__ is reserved by ElevenLabs, so such a key is never one of the LLM's arguments.
        if key.startswith(_SYSTEM) and key not in params:
            system[key] = value
        else:
            arguments[key] = value
    call_id = first_text(
        system.get(CALL_ID_VARIABLE),
        headers.get("x-patchbay-call-id"),
        query.get("call_id"),
        system.get("system__call_sid"),
    )
    caller = first_text(
        system.get(CALLER_VARIABLE), headers.get("x-patchbay-caller"), query.get("caller")
    )
    if call_id is None:
        return arguments, None
    return arguments, CallContext(id=call_id, tenant=tenant, caller=text_or_none(caller))
