"""What a tool call returns, whatever happened: the tool result contract of DESIGN.md."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from patchbay.spec._call import CallContext

# Compact UTF-8 JSON for results (what every surface sends), faster than json.dumps.
_encode = msgspec.json.Encoder().encode


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
        return _encode(self.to_dict()).decode()

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
        return _encode(self.for_llm()).decode()
