"""The audit trail's hash chain: how a line is sealed, and how a trail of files is verified.

Each line is a JSON object whose last member is `"mac"`: SHA-256 (or HMAC-SHA256 with a key)
over the exact text before it, which holds `"seq"` (1, 2, ...) and `"prev"` (the previous
line's mac; 64 zeros for the first line ever). Editing a line changes its mac; removing,
reordering or inserting one breaks the next `prev` or `seq`. Without a key anyone can
recompute a consistent chain after editing; with one, only holders of the key can.
A chain proves nothing about lines cut from its end: keep the last mac elsewhere for that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

GENESIS = "0" * 64
_SEALED = re.compile(r'(\{.*),"mac":"([0-9a-f]{64})"\}')


def seal(body: str, key: bytes | None) -> str:
    """The mac of a line's text before its `"mac"` member."""
    if key is None:
        return hashlib.sha256(body.encode()).hexdigest()
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def sealed_line(record: dict[str, object], key: bytes | None) -> tuple[str, str]:
    """(line without newline, its mac) for a record that already holds `seq` and `prev`."""
    body = json.dumps(record, separators=(",", ":"), ensure_ascii=False)[:-1]
    mac = seal(body, key)
    return f'{body},"mac":"{mac}"}}', mac


def last_link(path: Path) -> tuple[int, str] | None:
    """(seq, mac) of the last complete line of an audit file, or None if it has none."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            tail = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None
    for line in reversed(tail.splitlines()):
        found = _SEALED.fullmatch(line.strip())
        if found is None:
            continue
        try:
            seq = json.loads(line)["seq"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(seq, int):
            return seq, found.group(2)
    return None


@dataclass(frozen=True, slots=True)
class Break:
    """Where a trail stops being intact: file, 1-based line number and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass(slots=True)
class _Line:
    path: str
    number: int
    text: str


def _lines(paths: Sequence[Path]) -> Iterable[_Line]:
    for path in paths:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for number, text in enumerate(fh, 1):
                yield _Line(str(path), number, text.rstrip("\n"))


def _first_seq(path: Path) -> int:
    """The seq of a file's first line (files are checked in chain order, not argument order)."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
    try:
        seq = json.loads(first).get("seq")
    except (ValueError, AttributeError):
        return 0
    return seq if isinstance(seq, int) else 0


def verify(
    paths: Sequence[Path], key: bytes | None, *, partial: bool = False
) -> tuple[int, Break | None]:
    """(lines checked, the first break or None) for audit files holding one chain.

    The files may be given in any order (they are put in chain order by their first line). The
    chain must start at its first line, unless `partial` lets it continue earlier files not
    given (archived ones); every later line must follow.
    """
    ordered = sorted(paths, key=_first_seq)
    prev: str | None = None
    seq: int | None = None
    count = 0
    for line in _lines(ordered):
        count += 1
        found = _SEALED.fullmatch(line.text)
        if found is None:
            return count, Break(line.path, line.number, "not a sealed audit line")
        try:
            data = json.loads(line.text)
        except ValueError:
            return count, Break(line.path, line.number, "not JSON")
        if not isinstance(data, dict):
            return count, Break(line.path, line.number, "not a JSON object")
        if seal(found.group(1), key) != found.group(2):
            why = "edited: its mac does not match its content"
            if key is None and count == 1:
                why += " (if the trail is keyed, give its key)"
            return count, Break(line.path, line.number, why)
        line_seq, line_prev = data.get("seq"), data.get("prev")
        if prev is not None and (line_prev != prev or line_seq != seq):
            if isinstance(line_seq, int) and seq is not None and line_seq > seq:
                why = f"line(s) removed before it: expected seq {seq}, found {line_seq}"
            else:
                why = f"out of chain: expected seq {seq} after the previous line, found {line_seq}"
            return count, Break(line.path, line.number, why)
        if prev is None and line_seq == 1 and line_prev != GENESIS:
            return count, Break(line.path, line.number, "out of chain: a first line must start it")
        if prev is None and not partial and line_seq != 1:
            why = (
                f"line(s) removed before it: the trail starts at seq {line_seq}, not 1 "
                "(give its earlier files, or --partial if they are archived elsewhere)"
            )
            return count, Break(line.path, line.number, why)
        if not isinstance(line_seq, int):
            return count, Break(line.path, line.number, "no seq")
        prev, seq = found.group(2), line_seq + 1
    return count, None
