"""Sanitised request and response logs: a tool call's arguments and answer, by shape or redacted.

`shape` keeps only keys and JSON types; `redacted` keeps values with secrets, caller contact
(by key, by the parameter's e164/email format and by pattern) and the tool's `strip` fields
replaced. Keys are scrubbed too: an LLM may put anything where a key belongs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from typing import Any, Literal

from patchbay.observe._redact import REDACTED, Redactor
from patchbay.spec._model import Tool
from patchbay.spec._nested import contact_fields

BodyMode = Literal["none", "shape", "redacted"]
_MAX_CHARS = 8000  # a log line, not an archive: longer bodies are cut
_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
)


def shape(value: Any, redactor: Redactor) -> Any:
    """Keys and JSON types of `value` (a list by its first item), no values."""
    if isinstance(value, Mapping):
        return {redactor.text(str(k)): shape(v, redactor) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [shape(value[0], redactor)] if value else []
    if value is None:
        return "null"
    return next((name for kind, name in _TYPES if isinstance(value, kind)), "string")


def masked(value: Any, redactor: Redactor, hidden: Collection[str]) -> Any:
    """`value` with secrets and caller contact replaced, and whole values under `hidden` keys."""
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            key = str(k)
            hide = key in hidden or Redactor.sensitive(key)
            out[redactor.text(key)] = REDACTED if hide else masked(v, redactor, hidden)
        return out
    if isinstance(value, list | tuple):
        return [masked(v, redactor, hidden) for v in value]
    if isinstance(value, str):
        return redactor.text(value)
    return value if isinstance(value, int | float | bool) or value is None else REDACTED


class BodyLogger:
    """Logs one line per tool call to `patchbay.bodies` at INFO: arguments and answer."""

    __slots__ = ("_logger", "_mode", "_redactor")

    def __init__(
        self,
        mode: BodyMode,
        redactor: Redactor | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._mode = mode
        self._redactor = redactor or Redactor()
        self._logger = logger or logging.getLogger("patchbay.bodies")

    def log(
        self,
        name: str,
        tool: Tool | None,
        call_id: str | None,
        outcome: str | None,
        arguments: Mapping[str, Any],
        answer: Any,
    ) -> None:
        """Log a finished call's arguments and answer in the configured mode."""
        if self._mode == "none" or not self._logger.isEnabledFor(logging.INFO):
            return
        if self._mode == "shape":
            args, out = shape(arguments, self._redactor), shape(answer, self._redactor)
        else:
            hidden = _hidden(tool)
            args, out = (
                masked(arguments, self._redactor, hidden),
                masked(answer, self._redactor, hidden),
            )
        line = json.dumps(
            {
                "tool": self._redactor.text(name),
                "call_id": call_id,
                "outcome": outcome,
                "mode": self._mode,
                "arguments": args,
                "answer": out,
            },
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        )
        if len(line) > _MAX_CHARS:
            line = line[:_MAX_CHARS] + "…"
        self._logger.info("bodies %s", line)


def _hidden(tool: Tool | None) -> frozenset[str]:
    """Keys whose values are never logged for this tool: `strip` fields, phone/email params."""
    if tool is None:
        return frozenset()
    contact = {n for n, p in tool.parameters.items() if p.format in ("e164", "email")}
    for param in tool.parameters.values():
        contact |= contact_fields(param)  # such fields inside object arguments, by their names
    return frozenset((*tool.response.strip, *contact))
