"""What a tool call returns, whatever happened: the result contract every surface shares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from patchbay.spec._call import CallContext

__all__ = ["ErrorInfo", "ToolCall", "ToolResult", "encode_json", "json_safe"]

# Compact UTF-8 JSON for results (what every surface sends), faster than json.dumps.
_encode = msgspec.json.Encoder().encode


def _safe_text(text: str) -> str:
    try:
        text.encode()
    except UnicodeEncodeError:
        # A lone surrogate (the JSON escape \ud800 decodes to one) has no UTF-8 form: through
        # UTF-16 a proper pair survives and each lone half becomes U+FFFD.
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def json_safe(data: Any) -> Any:
    """`data` with every string (keys too) made encodable as UTF-8: lone surrogates replaced."""
    if isinstance(data, str):
        return _safe_text(data)
    if isinstance(data, Mapping):
        return {json_safe(k): json_safe(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [json_safe(v) for v in data]
    return data


def encode_json(data: Any) -> bytes:
    """Compact UTF-8 JSON of `data`, whatever strings came in (see `json_safe`)."""
    try:
        return _encode(data)
    except UnicodeEncodeError:
        # Only text that arrived broken pays for the walk; every other answer encodes once.
        return _encode(json_safe(data))


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One request from an LLM to run a tool during a phone call."""

    tool: str
    arguments: Mapping[str, Any]
    call: CallContext
    tool_call_id: str | None = None  # the platform's id for this invocation, if any


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why a tool call failed, in words an LLM can act on."""

    code: str
    message: str
    retryable: bool = False
    fields: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
            "fields": dict(self.fields),
        }


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The envelope every execution returns: ok/result or error, words to say, and meta."""

    ok: bool
    tool: str
    call_id: str | None
    result: Any = None
    error: ErrorInfo | None = None
    say: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the contract."""
        return {
            "ok": self.ok,
            "tool": self.tool,
            "call_id": self.call_id,
            "result": self.result,
            "error": self.error.to_dict() if self.error else None,
            "say": self.say,
            "meta": dict(self.meta),
        }

    def to_json(self) -> str:
        """Compact JSON text of `to_dict()`."""
        return encode_json(self.to_dict()).decode()

    def for_llm(self) -> dict[str, Any]:
        """What the model reads: the result, or the error words and fallback line; no meta."""
        if self.ok:
            out: dict[str, Any] = {"ok": True, "result": self.result}
        else:
            assert self.error is not None
            out = {"ok": False, "error": self.error.code, "message": self.error.message}
            if self.error.fields:
                out["fields"] = dict(self.error.fields)
        if self.say:
            out["say"] = self.say
        return out

    def llm_text(self) -> str:
        """`for_llm()` as compact JSON text, for frameworks that want a string."""
        return encode_json(self.for_llm()).decode()
