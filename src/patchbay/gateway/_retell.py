"""Retell custom functions: `{"name", "call", "args"}` in (or the bare args), the result out.

Retell POSTs `{"name": <function>, "call": <call object>, "args": {...}}` with an
`X-Retell-Signature` (checked in `_auth`). With the function's `args_at_root` option
("Payload: args only") the body is the arguments alone; the call then comes from the query
string (`?call_id={{call_id}}&caller={{user_number}}`, Retell dynamic variables) or headers.
Retell hands the answer body to the LLM: it is the tool result as the model should read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from patchbay.gateway._http import DoorError, arguments_object, first_text, mapping, text_or_none
from patchbay.spec import CallContext

__all__ = ["retell_call"]


def _wrapped(body: Mapping[str, Any]) -> bool:
    # Retell's envelope, whatever `args` holds: a list there is a 400, not a body of arguments.
    return "args" in body and ("call" in body or "name" in body)


def retell_call(
    tool: str,
    body: Mapping[str, Any],
    query: Mapping[str, str],
    headers: Mapping[str, str],
    tenant: str | None,
) -> tuple[dict[str, Any], CallContext | None]:
    """The arguments and the phone call of a custom-function request (None: no call named)."""
    if _wrapped(body):
        named = body.get("name")
        if isinstance(named, str) and named and named != tool:
            raise DoorError(
                400, "bad_request", f"The body calls {named!r} but the URL names {tool!r}."
            )
        arguments = arguments_object(body.get("args"), "args")
        call = mapping(body.get("call"))
        # An outbound call's customer is the number dialled; an inbound one's is the caller.
        outbound = call.get("direction") == "outbound"
        customer = call.get("to_number") if outbound else call.get("from_number")
        call_id = first_text(call.get("call_id"), query.get("call_id"))
        caller = first_text(customer, query.get("caller"))
    else:
        arguments = dict(body)
        call_id = first_text(query.get("call_id"), headers.get("x-patchbay-call-id"))
        caller = first_text(query.get("caller"), headers.get("x-patchbay-caller"))
    if call_id is None:
        return arguments, None
    return arguments, CallContext(id=call_id, tenant=tenant, caller=text_or_none(caller))
