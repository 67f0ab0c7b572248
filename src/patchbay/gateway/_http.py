"""Small pieces every gateway endpoint shares: bounded body reading, JSON answers, door errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

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


# Compact UTF-8 JSON, several times faster than json.dumps on every answer.
_encode = msgspec.json.Encoder().encode


def dumps(data: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return _encode(data)


_decode = msgspec.json.Decoder().decode


def loads(text: bytes | str) -> Any:
    """JSON text as Python data; ValueError when it is not JSON."""
    try:
        return _decode(text)
    except msgspec.DecodeError:
        pass  # what msgspec refuses and Python's json reads (NaN, a BOM, huge integers)
    try:
        return json.loads(text)
    except UnicodeDecodeError as exc:
        raise ValueError(str(exc)) from None


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


def refuse(surface: Surface, request: Request, err: DoorError) -> Response:
    """Log a refused request (path and reason only: never headers or bodies) and answer it."""
    client = request.client.host if request.client else "-"
    log.warning(
        "refused %s %s from %s: %s %s (%s)",
        request.method,
        request.url.path,
        client,
        err.status,
        err.code,
        err.message,
    )
    return json_response(error_body(surface, err.code, err.message), err.status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it grows past `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise DoorError(400, "bad_request", "Content-Length is not a number.") from None
        if size > limit:
            raise DoorError(413, "payload_too_large", f"The body is over {limit} bytes.")
    chunks: list[bytes] = []
    total = 0
    # The ASGI messages read directly: Request.stream() wraps them in an async generator.
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise DoorError(413, "payload_too_large", f"The body is over {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_object(body: bytes, what: str = "The body") -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it."""
    if not body:
        raise DoorError(400, "bad_request", f"{what} is empty; send a JSON object.")
    try:
        data = loads(body)
    except ValueError:
        raise DoorError(400, "bad_request", f"{what} is not valid JSON.") from None
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
        except ValueError:
            raise DoorError(400, "bad_request", f"{what} is not valid JSON.") from None
    if not isinstance(value, dict):
        raise DoorError(400, "bad_request", f"{what} must be a JSON object.")
    return value


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
