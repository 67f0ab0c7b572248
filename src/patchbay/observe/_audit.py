"""The audit trail: one durable, redacted line per tool call (who, what, when, outcome)."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

from patchbay.observe._events import Event
from patchbay.observe._redact import Redactor


class AuditSink:
    """Appends every finished tool call to a JSON-lines file, flushed line by line.

    Only `tool_call` and `background` events are kept: the audit trail answers "which call
    did what to which API, and how did it end", not request-level detail.
    """

    __slots__ = ("_fh", "_lock", "_redactor")

    def __init__(self, path: str | os.PathLike[str], redactor: Redactor | None = None) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()
        self._redactor = redactor or Redactor()

    def emit(self, event: Event) -> None:
        """Append one line for a finished tool call or background write."""
        if event.kind not in ("tool_call", "background"):
            return
        record = {
            "at": datetime.fromtimestamp(event.ts, UTC).isoformat(timespec="milliseconds"),
            "kind": event.kind,
            "tool": event.tool,
            "call_id": event.call_id,
            "tenant": event.tenant,
            "integration": event.integration,
            "outcome": event.outcome,
            "status": event.status,
            "latency_ms": event.latency_ms,
        }
        if event.extra:
            record["extra"] = self._redactor.data(dict(event.extra))
        line = json.dumps({k: v for k, v in record.items() if v is not None}, separators=(",", ":"))
        with self._lock:
            self._fh.write(line + "\n")

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._fh.close()
