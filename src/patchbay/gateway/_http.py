"""Small pieces every gateway endpoint shares: bounded body reading, JSON answers, door errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import msgspec
from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from patchbay.runtime._result import encode_json

log = logging.getLogger("patchbay.gateway")

JSON = "application/json"


class Surface(StrEnum):
    """Who a gateway endpoint speaks to; decides how errors are shaped and callers checked."""

    API = "api"
    VAPI = "vapi"
    RETELL = "retell"
    ELEVENLABS = "elevenlabs"


class DoorError(Exception):
    """A request refused at the gateway's door (4xx), before or instead of running a tool."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def dumps(data: Any) -> bytes:
    """Compact UTF-8 JSON (msgspec: several times faster than json.dumps), whatever came in."""
    return encode_json(data)


_decode = msgspec.json.Decoder().decode
TOO_DEEP = "nested too deeply"  # loads' reason for JSON nested past the recursion limit


def loads(text: bytes | str) -> Any:
    """JSON text as Python data; ValueError when it is not JSON."""
    try:
        return _decode(text)
    except msgspec.DecodeError:
        pass  # what msgspec refuses and Python's json reads (NaN, a BOM, huge integers)
    except RecursionError:
        raise ValueError(TOO_DEEP) from None
    try:
        return json.loads(text)
    except UnicodeDecodeError as exc:
        raise ValueError(str(exc)) from None
    except RecursionError:
        raise ValueError(TOO_DEEP) from None


CHALLENGE = 'Bearer realm="patchbay"'  # the WWW-Authenticate of every 401 of the gateway


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON answer."""
    return Response(dumps(data), status_code=status, media_type=JSON)


def error_body(surface: Surface, code: str, message: str) -> dict[str, Any]:
    """A door error shaped so the surface's caller can parse it.

    Vapi's tool-calls answer has a string `error` beside `results`; Retell and ElevenLabs hand the
    body to the LLM, so it reads like a failed tool result; other clients get a nested object.
    """
    if surface is Surface.VAPI:
        return {"results": [], "error": message, "code": code}
    if surface in (Surface.RETELL, Surface.ELEVENLABS):
        return {"ok": False, "error": code, "message": message}
    return {"error": {"code": code, "message": message}}


def request_path(request: Request) -> str:
    """The path as the server decoded it (`request.url` also decodes the query, strictly)."""
    return str(request.scope.get("path", ""))


def query_params(request: Request) -> Mapping[str, str]:
    """The query string's parameters read as UTF-8, any byte that is not UTF-8 replaced.

    Starlette reads raw bytes as Latin-1 (a name in UTF-8 would become another name) and
    `request.url` decodes them strictly (a raw byte that is not UTF-8 would fail the request).
    """
    raw = request.scope.get("query_string", b"")
    if not raw:
        return {}
    return QueryParams(raw.decode("utf-8", "replace"))


def refuse(surface: Surface, request: Request, err: DoorError) -> Response:
    """Log a refused request (path and reason only: never headers or bodies) and answer it."""
    client = request.client.host if request.client else "-"
    log.warning(
        "refused %s %s from %s: %s %s (%s)",
        request.method,
        request_path(request),
        client,
        err.status,
        err.code,
        err.message,
    )
    answer = json_response(error_body(surface, err.code, err.message), err.status)
    if err.status == 401:
        # RFC 9110 asks it of every 401; without it MCP clients take the 401 as the start of
        # an OAuth discovery instead of "send your bearer token".
        answer.headers["WWW-Authenticate"] = CHALLENGE
    return answer


class BodyBudget:
    """Bytes of bodies read before their sender is verified (Retell signs the body itself).

    Shared by every such request, so clients who send most of a body and stall cannot make the
    gateway hold `max_body_bytes` each: past the budget a request is refused at once (503).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> None:
        """Hold `size` more bytes, or raise a 503 DoorError when the budget has no room."""
        if self.held + size > self.limit:
            raise DoorError(
                503, "busy", "Too many unverified requests are arriving at once; try again."
            )
        self.held += size

    def give(self, size: int) -> None:
        """Release bytes taken."""
        self.held -= size


async def read_body(request: Request, limit: int, budget: BodyBudget | None = None) -> bytes:
    """The request body, refused with 413 as soon as it grows past `limit` bytes.

    With a `budget`, the bytes read count against it until the body is returned (or refused).
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise DoorError(400, "bad_request", "Content-Length is not a number.") from None
        if size > limit:
            raise DoorError(413, "payload_too_large", f"The body is over {limit} bytes.")
    chunks: list[bytes] = []
    total = held = 0
    try:
        # The ASGI messages read directly: Request.stream() wraps them in an async generator.
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise DoorError(413, "payload_too_large", f"The body is over {limit} bytes.")
            if budget is not None:
                budget.take(len(chunk))
                held += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        if budget is not None:
            budget.give(held)


def _unreadable(exc: ValueError) -> str:
    return "is JSON nested too deeply" if str(exc) == TOO_DEEP else "is not valid JSON"


def parse_object(body: bytes, what: str = "The body") -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it."""
    if not body:
        raise DoorError(400, "bad_request", f"{what} is empty; send a JSON object.")
    try:
        data = loads(body)
    except ValueError as exc:
        raise DoorError(400, "bad_request", f"{what} {_unreadable(exc)}.") from None
    if not isinstance(data, dict):
        raise DoorError(400, "bad_request", f"{what} must be a JSON object.")
    return data


def arguments_object(value: Any, what: str = "arguments") -> dict[str, Any]:
    """Tool arguments given as an object, a JSON string of one, or nothing at all."""
    if value is None:
        return {}
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = loads(value)
        except ValueError as exc:
            raise DoorError(400, "bad_request", f"{what} {_unreadable(exc)}.") from None
    if not isinstance(value, dict):
        raise DoorError(400, "bad_request", f"{what} must be a JSON object.")
    return value


def api_arguments(body: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of a `POST /tools/{name}` body, refusing a body that puts them elsewhere."""
    stray = [key for key in body if key not in ("arguments", "call")]
    if "arguments" not in body and stray:
        named = ", ".join(repr(key[:40]) for key in stray[:5])
        raise DoorError(
            400,
            "bad_request",
            f"The body has {named} at the top level; the tool's arguments go inside "
            '"arguments": send {"arguments": {...}, "call": {"id": ...}}.',
        )
    call = body.get("call")
    if call is not None:
        if not isinstance(call, dict):
            raise DoorError(
                400,
                "bad_request",
                'call must be a JSON object like {"id": "...", "caller": "..."}.',
            )
        for key in ("id", "tenant", "caller"):
            if call.get(key) is not None and not isinstance(call[key], str):
                raise DoorError(400, "bad_request", f"call.{key} must be a string.")
    return arguments_object(body.get("arguments"), "arguments")


# A call's state is held for every live call and written to the store whenever it changes;
# facts about a call take a few hundred bytes, so these bound what one request can make it hold.
MAX_STATE_BYTES = 32 * 1024
MAX_STATE_DEPTH = 32
_encode_strict = msgspec.json.Encoder().encode


def lifecycle_fields(body: Mapping[str, Any]) -> None:
    """Refuse a `/calls/{id}/start|end` body whose fields have the wrong type, or whose state
    the call's store could not keep (400)."""
    for key in ("tenant", "caller"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise DoorError(400, "bad_request", f"{key} must be a string.")
        if not _is_text(value):
            raise DoorError(
                400, "bad_request", f"{key} is not valid text: it holds a lone surrogate."
            )
    state = body.get("state")
    if state is None:
        return
    if not isinstance(state, dict):
        raise DoorError(400, "bad_request", "state must be a JSON object of facts about the call.")
    problem = _state_problem(state)
    if problem is not None:
        raise DoorError(400, "bad_request", f"state {problem}.")


def _is_text(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _state_problem(state: dict[str, Any]) -> str | None:
    """Why a call's store could not keep `state` (as JSON, whole), or None."""
    # Level by level, without recursion: the depth is checked before anything encodes it.
    level: list[Any] = [state]
    for _ in range(MAX_STATE_DEPTH):
        inner: list[Any] = []
        for value in level:
            items = value.values() if isinstance(value, dict) else value
            inner.extend(v for v in items if isinstance(v, dict | list))
        level = inner
        if not level:
            break
    else:
        return f"is nested more than {MAX_STATE_DEPTH} levels deep"
    try:
        size = len(_encode_strict(state))
    except UnicodeEncodeError:
        return "holds text that is not valid Unicode (a lone surrogate); send valid UTF-8 text"
    except (ValueError, TypeError, OverflowError):
        return "holds values JSON cannot carry"
    if size > MAX_STATE_BYTES:
        return f"is over {MAX_STATE_BYTES} bytes as JSON; keep only the facts the call's tools need"
    return None


def text_or_none(value: Any) -> str | None:
    """A non-empty string, or None."""
    return value if isinstance(value, str) and value else None


def first_text(*values: Any) -> str | None:
    """The first non-empty string among `values`."""
    for value in values:
        if isinstance(value, str) and value:
            return value
    return None


def mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}
