"""What a config's `observe` block adds to every finished tool call: body logs and audit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from patchbay.observe._audit import AuditSink
from patchbay.observe._bodies import BodyLogger
from patchbay.observe._events import Event
from patchbay.observe._redact import Redactor
from patchbay.spec._model import Tool
from patchbay.spec._ops import ObserveSpec

# Resolves a secret reference to its value (the runtime's SecretResolver, revealed).
ResolveKey = Callable[[str], Awaitable[str]]
log = logging.getLogger("patchbay.observe")
_redactor = Redactor()
_MAX_FIELD_CHARS = 256  # an audited field is an id or an amount, not a document


class CallObserver:
    """Writes the audit line and the body log of each tool call, as `observe` configures.

    Built only when the config asks for one of them: without, the runtime skips it entirely.
    The audit key is resolved on the first line written (references resolve asynchronously).
    Also an event sink, for the audit lines of background outcomes.
    """

    def __init__(self, spec: ObserveSpec, base_dir: str | Path, resolve: ResolveKey) -> None:
        self._spec = spec
        self._resolve = resolve
        self._bodies = BodyLogger(spec.log.bodies) if spec.log.bodies != "none" else None
        self._audit: AuditSink | None = None
        self._opening: asyncio.Lock | None = None
        self._path = Path(base_dir) / spec.audit.path if spec.audit else None

    @classmethod
    def build(
        cls, spec: ObserveSpec, base_dir: str | Path, resolve: ResolveKey
    ) -> CallObserver | None:
        """Apply `log.level`; an observer if `spec` asks for body logs or an audit trail."""
        if spec.log.level is not None:
            logging.getLogger("patchbay").setLevel(spec.log.level.upper())
        if spec.audit is None and spec.log.bodies == "none":
            return None
        return cls(spec, base_dir, resolve)

    async def _sink(self) -> AuditSink | None:
        if self._audit is not None or self._spec.audit is None or self._path is None:
            return self._audit
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._audit is None:
                ref = self._spec.audit.key
                key = (await self._resolve(ref)).encode() if ref is not None else None
                rotate = self._spec.audit.rotate_bytes
                self._audit = AuditSink(self._path, key=key, rotate_bytes=rotate)
        return self._audit

    async def finished(
        self,
        event: Event,
        tool: Tool | None,
        arguments: Mapping[str, Any],
        answer: Any,
        who: Mapping[str, str | None],
    ) -> None:
        """Log the call's bodies and append its audit line; a failure here never fails a call."""
        try:
            if self._bodies is not None:
                self._bodies.log(event.tool, tool, event.call_id, event.outcome, arguments, answer)
            sink = await self._sink()
            if sink is not None:
                fields = _fields(tool, arguments, answer)
                sink.record(event, who=who, operation=_operation(tool), fields=fields)
        except Exception as exc:  # observation must never break a call
            # The reason names a reference or a path, never a value; still scrubbed like events.
            log.error("observe: tool %s not recorded: %s", event.tool, _redactor.text(str(exc)))

    def emit(self, event: Event) -> None:
        """Audit a background write's outcome (tool calls come through `finished`)."""
        if event.kind == "background" and self._audit is not None:
            self._audit.record(event)

    def close(self) -> None:
        """Close the audit file."""
        if self._audit is not None:
            self._audit.close()


def _operation(tool: Tool | None) -> str | None:
    if tool is None:
        return None
    if tool.request is not None:
        return f"{tool.request.method} {tool.request.path}"
    if tool.graphql is not None:
        return f"graphql {tool.graphql.kind} {tool.graphql.operation}"
    if tool.handler is not None:
        return f"handler {tool.handler}"
    return f"builtin {tool.builtin}" if tool.builtin else None


def _fields(tool: Tool | None, arguments: Mapping[str, Any], answer: Any) -> dict[str, Any]:
    """The tool's `audit` fields: from the arguments, else from the answer's top level."""
    if tool is None or not tool.audit:
        return {}
    found: dict[str, Any] = {}
    for name in tool.audit:
        if name in arguments:
            value = arguments[name]
        elif isinstance(answer, Mapping) and name in answer:
            value = answer[name]
        else:
            continue
        if isinstance(value, str) and len(value) > _MAX_FIELD_CHARS:
            value = value[:_MAX_FIELD_CHARS] + "…"
        found[name] = value
    return found
