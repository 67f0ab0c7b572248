"""Tools patchbay answers itself: `builtin: callback_request` takes the caller's details down."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from patchbay._errors import ToolError
from patchbay.spec._call import CallContext
from patchbay.spec._model import Tool
from patchbay.state import StateError, StateStore

CALLBACKS = "callbacks"
CALLBACK_WORDS = "I've taken your details; someone will call you back."


async def take_callback_request(
    store: StateStore, tool: Tool, args: dict[str, Any], call: CallContext
) -> dict[str, Any]:
    """Store the caller's request durably (hash `callbacks`); the result the LLM reads."""
    reference = f"cb_{uuid.uuid4().hex[:12]}"
    record = {
        "reference": reference,
        "tool": tool.name,
        "call_id": call.id,
        "tenant": call.tenant,
        "caller": call.caller,  # the number the call came from, whatever the caller said
        "request": args,
        "created_at": time.time(),
    }
    try:
        await store.hset(CALLBACKS, reference, json.dumps(record, default=str).encode())
    except StateError:
        raise ToolError("The request could not be noted down right now.", retryable=True) from None
    return {"status": "recorded", "reference": reference}


async def list_callback_requests(store: StateStore) -> list[dict[str, Any]]:
    """Every callback request taken, oldest first."""
    found = []
    for raw in (await store.hgetall(CALLBACKS)).values():
        try:
            found.append(json.loads(raw))
        except ValueError:
            continue
    return sorted(found, key=lambda r: float(r.get("created_at") or 0))
