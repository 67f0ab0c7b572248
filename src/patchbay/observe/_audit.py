"""The audit trail: one durable, hash-chained line per tool call (who, what, when, outcome).

See `patchbay.observe._chain` for how lines are sealed and verified.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from patchbay.observe._chain import GENESIS, last_link, sealed_line
from patchbay.observe._events import Event
from patchbay.observe._redact import REDACTED, Redactor

# Never in an audit line, whatever a background event carries: idempotency keys and refs.
_NEVER = frozenset({"key", "idempotency_key"})


def rotated_name(path: Path, number: int) -> Path:
    """The name of a rotated audit file: `audit.jsonl` -> `audit.000001.jsonl`."""
    return path.with_name(f"{path.stem}.{number:06d}{path.suffix}")


def _rotated(path: Path) -> list[tuple[int, Path]]:
    pattern = re.compile(re.escape(path.stem) + r"\.(\d{6,})" + re.escape(path.suffix))
    found = []
    for sibling in path.parent.glob(f"{path.stem}.*{path.suffix}"):
        match = pattern.fullmatch(sibling.name)
        if match is not None:
            found.append((int(match.group(1)), sibling))
    return sorted(found)


class _Trail:
    """One audit file's chain head and handle, shared by every sink of this process on it.

    A reloaded gateway runs two runtimes for a moment (calls in flight finish on the old one):
    both must continue one chain in one file, not two chains interleaved.
    """

    __slots__ = ("fh", "lock", "path", "prev", "rotate", "seq", "users")

    def __init__(self, path: Path, rotate: int | None) -> None:
        self.path = path
        self.rotate = rotate
        self.lock = threading.Lock()
        self.users = 0
        link = last_link(path)
        if link is None:
            older = _rotated(path)
            link = last_link(older[-1][1]) if older else None
        self.seq, self.prev = link if link is not None else (0, GENESIS)
        self.fh = path.open("a", encoding="utf-8", buffering=1)

    def roll(self, size: int) -> None:
        """Start a new file when this line would take the current one past `rotate`."""
        if self.rotate is None:
            return
        used = self.fh.tell()
        if used == 0 or used + size <= self.rotate:
            return
        self.fh.close()
        older = _rotated(self.path)
        os.replace(self.path, rotated_name(self.path, older[-1][0] + 1 if older else 1))
        self.fh = self.path.open("a", encoding="utf-8", buffering=1)


_TRAILS: dict[Path, _Trail] = {}
_TRAILS_LOCK = threading.Lock()


def _open_trail(path: Path, rotate: int | None) -> _Trail:
    with _TRAILS_LOCK:
        trail = _TRAILS.get(path)
        if trail is None or trail.users == 0:
            trail = _TRAILS[path] = _Trail(path, rotate)
        trail.users += 1
        return trail


def _release(trail: _Trail) -> None:
    with _TRAILS_LOCK, trail.lock:
        trail.users -= 1
        if trail.users == 0:
            trail.fh.close()
            if _TRAILS.get(trail.path) is trail:
                del _TRAILS[trail.path]


class AuditSink:
    """Appends every finished tool call to a JSON-lines file, each line chained to the last.

    Only `tool_call` and `background` events are kept: the audit trail answers "which call
    did what to which API, and how did it end", not request-level detail. With `key` the chain
    is an HMAC only its holders can recompute; with `rotate_bytes` a full file is renamed to
    `NAME.000001.jsonl` (and so on) and the chain goes on in a new one. A sink reopening a
    trail continues its chain; sinks of one process on one file share it. One process writes
    one trail.
    """

    __slots__ = ("_closed", "_key", "_path", "_redactor", "_trail")

    def __init__(
        self,
        path: str | os.PathLike[str],
        redactor: Redactor | None = None,
        *,
        key: bytes | None = None,
        rotate_bytes: int | None = None,
    ) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._key = key
        self._redactor = redactor or Redactor()
        self._trail = _open_trail(self._path.resolve(), rotate_bytes)
        self._closed = False

    def emit(self, event: Event) -> None:
        """Append one line for a finished tool call or background write."""
        if event.kind in ("tool_call", "background"):
            self.record(event)

    def record(
        self,
        event: Event,
        *,
        who: Mapping[str, str | None] | None = None,
        operation: str | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one line for `event`, with who asked, the operation and the audited fields.

        `fields` are written as given (the tool's `audit` list), except under keys that name
        credentials or caller contact, and secret values wherever they appear.
        """
        record: dict[str, Any] = {
            "at": datetime.fromtimestamp(event.ts, UTC).isoformat(timespec="milliseconds"),
            "kind": event.kind,
            "tool": event.tool,
            "integration": event.integration,
            "operation": operation,
            "call_id": event.call_id,
            "tenant": event.tenant,
            **(dict(who) if who else {}),
            "outcome": event.outcome,
            "status": event.status,
            "attempts": event.attempt,
            "latency_ms": event.latency_ms,
        }
        if fields:
            record["fields"] = {k: self._given(k, v) for k, v in fields.items()}
        extra = {k: v for k, v in event.extra.items() if k not in _NEVER}
        if extra:
            record["extra"] = self._redactor.data(extra)
        body = {k: v for k, v in record.items() if v is not None}
        trail = self._trail
        with trail.lock:
            line, mac = sealed_line({"seq": trail.seq + 1, "prev": trail.prev, **body}, self._key)
            trail.roll(len(line.encode()) + 1)
            trail.fh.write(line + "\n")
            trail.seq, trail.prev = trail.seq + 1, mac

    def _given(self, key: str, value: Any) -> Any:
        if Redactor.sensitive(key):
            return REDACTED
        if isinstance(value, str):
            return self._redactor.secrets_only(value)
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self._redactor.data(json.loads(json.dumps(value, default=str)))

    @property
    def last_mac(self) -> str:
        """The mac of the last line written (keep it elsewhere to detect a cut tail)."""
        return self._trail.prev

    def close(self) -> None:
        """Close the file (once the last sink of this process on it closes)."""
        if not self._closed:
            self._closed = True
            _release(self._trail)
