"""Reading a GraphQL answer: `data` for the tool's response, `errors` as the contract's codes.

A GraphQL server answers most failures with 200 and an `errors` list, so the status alone says
little. Rules, in order:

- a non-2xx status is classified by its status (as for REST), in the words `response.messages`
  gives the first error's `extensions.code`;
- `errors` with no usable `data` (null, or every top-level field null) fail the call: the first
  error with a known `extensions.code` decides the error code (NOT_FOUND -> not_found,
  UNAUTHENTICATED and FORBIDDEN -> unauthorized, BAD_USER_INPUT -> client_error, ...), any
  other is upstream_unavailable;
- `errors` beside usable `data` (partial data) answer with the data: the result gains
  `incomplete`, a list of what is missing in the tool's words, and `meta.partial` the paths
  and codes, so the agent never speaks a gap as if it were an answer.

Upstream error messages never reach the LLM: only words from `response.messages` or defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from patchbay._errors import ErrorCode, UpstreamUnavailable
from patchbay.http._types import Response
from patchbay.policies._base import Exchange
from patchbay.policies._classify import (
    error_for_graphql,
    error_for_status,
    is_graphql_code_known,
)
from patchbay.spec._model import Tool

_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}")
_FIELD = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")
_MAX_GAPS = 10  # paths kept of a partial answer; more say nothing new to a caller
_PLAIN_4XX = frozenset({400, 404, 409, 422})
_UNREADABLE = "The system answered with something unreadable."


def _code(error: Any) -> str | None:
    extensions = error.get("extensions") if isinstance(error, Mapping) else None
    code = extensions.get("code") if isinstance(extensions, Mapping) else None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else None


def _deciding_code(errors: list[Any]) -> str | None:
    """The first known `extensions.code`, else the first code at all."""
    codes = [c for c in map(_code, errors) if c is not None]
    return next((c for c in codes if is_graphql_code_known(c)), codes[0] if codes else None)


# Codes whose meaning is narrower than their error code's default words.
_CODE_WORDS = {
    "FORBIDDEN": "That is not allowed for this account.",
    "BAD_USER_INPUT": "The system did not accept those details.",
}


def _words(tool: Tool, code: str | None, fallback: str) -> str:
    found = tool.response.messages.get(code) if code is not None else None
    return found or _CODE_WORDS.get((code or "").upper(), fallback)


def _path(error: Any) -> str | None:
    """An error's `path` as `customer.invoices[0]`; None unless every part is plain."""
    parts = error.get("path") if isinstance(error, Mapping) else None
    if not isinstance(parts, list) or not parts:
        return None
    out = ""
    for part in parts[:16]:
        if isinstance(part, int) and not isinstance(part, bool) and part >= 0:
            out += f"[{part}]"
        elif isinstance(part, str) and _FIELD.fullmatch(part):
            out += f".{part}" if out else part
        else:
            return None
    return out


def graphql_answer(
    response: Response, exchange: Exchange, defaults: Mapping[ErrorCode, str]
) -> Any:
    """The answer's `data`, or the ToolError its status or `errors` mean."""
    tool = exchange.tool
    try:
        body = response.json()
    except UpstreamUnavailable:
        if response.status < 300:
            raise
        body = None
    raw_errors = body.get("errors") if isinstance(body, Mapping) else None
    errors = raw_errors if isinstance(raw_errors, list) else []
    if response.status >= 300:
        code = _deciding_code(errors)
        if response.status in _PLAIN_4XX and is_graphql_code_known(code):
            # some servers answer a request's errors with 400 (Ariadne: any failure without
            # data): the code says more than the status
            probe = error_for_graphql(code, "")
            words = _words(tool, code, defaults.get(probe.code, probe.message))
            raise error_for_graphql(code, words, status_code=response.status, upstream_code=code)
        probe = error_for_status(response.status, "")
        words = _words(tool, code, defaults.get(probe.code, probe.message))
        raise error_for_status(response.status, words, upstream_code=code)
    if not isinstance(body, Mapping) or not ("data" in body or errors):
        raise UpstreamUnavailable(_UNREADABLE, status_code=response.status)
    data = body.get("data")
    usable = isinstance(data, Mapping) and any(v is not None for v in data.values())
    if not errors:
        return data
    if not usable:
        code = _deciding_code(errors)
        probe = error_for_graphql(code, "")
        words = _words(tool, code, defaults.get(probe.code, probe.message))
        # An unknown failure of a write without a key: asking again could repeat it.
        retryable = probe.retryable and (not tool.is_write or tool.idempotency is not None)
        raise error_for_graphql(
            code, words, status_code=response.status, upstream_code=code, retryable=retryable
        )
    gaps = []
    for error in errors[:_MAX_GAPS]:
        gaps.append({"path": _path(error), "code": _code(error)})
    exchange.notes["partial"] = gaps
    return data


def mark_incomplete(value: Any, exchange: Exchange, defaults: Mapping[ErrorCode, str]) -> Any:
    """`value` with `incomplete` (what is missing, in the tool's words) for a partial answer."""
    gaps = exchange.notes.get("partial")
    if not isinstance(gaps, list):
        return value
    missing = []
    for gap in gaps:
        code = gap.get("code")
        fallback = defaults.get(error_for_graphql(code, "").code, "It could not be loaded.")
        words = _words(exchange.tool, code, fallback)
        where = gap.get("path")
        root = exchange.tool.response.root
        if where and root and where.startswith(f"{root}.") and _FIELD.fullmatch(root):
            where = where[len(root) + 1 :]  # as the result reads, once rooted
        missing.append(f"{where}: {words}" if where else words)
    missing = list(dict.fromkeys(missing))
    if isinstance(value, dict):
        return {**value, "incomplete": missing}
    return {"answer": value, "incomplete": missing}
