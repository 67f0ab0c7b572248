"""The fuzz tests' instruments: a recording transport, the request checks, and the tally."""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from patchbay.http import Request, Response
from patchbay.spec import Param

# Long form: `make fuzz` sets these; `make test` runs the short form.
RUNTIME_CASES = int(os.environ.get("PATCHBAY_FUZZ_RUNTIME", "3000"))
GATEWAY_CASES = int(os.environ.get("PATCHBAY_FUZZ_GATEWAY", "1000"))
SEED = int(os.environ.get("PATCHBAY_FUZZ_SEED", "20251203"))

_PLACEHOLDER = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_.]*\}$")
# Control characters except HTAB, which RFC 9110 allows inside a field value.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

_CUSTOMER = {
    "id": "cus_8F2kLq",
    "name": "Jamie Patel",
    "phone": "+15551234567",
    "email": "jamie.patel@example.com",
    "status": "active",
    "tier": "gold",
    "internal_flags": ["vip"],
}
_CANNED: dict[str, tuple[int, Any]] = {
    "/customers": (200, {"status": 200, "data": {"customer": _CUSTOMER}}),
    "/invoices": (
        200,
        [
            {
                "id": "inv_1001",
                "customer_id": "cus_8F2kLq",
                "amount": 24700,
                "due_date": "2024-07-01",
                "status": "open",
            }
        ],
    ),
    "/payments": (
        201,
        {
            "status": "completed",
            "confirmation_number": "PAY-1",
            "invoice_id": "inv_1001",
            "amount": 100,
        },
    ),
}
_JSON = {"content-type": "application/json"}


class RecordingTransport:
    """Answers every request at once with a canned body, and keeps each request it was sent.

    Injected instead of a network transport: 100,000 tool calls must run in minutes.
    """

    def __init__(self) -> None:
        self.requests: list[Request] = []

    async def send(self, request: Request, timeout_s: float) -> Response:
        """Record `request` and answer with the body its path's first segment is canned for."""
        self.requests.append(request)
        path = urlsplit(request.url).path
        first = "/" + path.lstrip("/").split("/", 1)[0]
        status, body = _CANNED.get(first, (200, {"ok": True, "id": "thing_1"}))
        return Response(status, _JSON, json.dumps(body).encode())

    async def close(self) -> None:
        """Nothing to release."""


def request_problems(request: Request, base_path: str) -> list[str]:
    """What makes a sent request leave its declared template, or carry a control character.

    The filled path must have the template's segments: literals unchanged, each placeholder
    exactly one non-empty segment that is not a dot segment once decoded; no query or
    fragment may come from a value (query parameters travel apart, in `request.query`).
    """
    problems: list[str] = []
    parts = urlsplit(request.url)
    if parts.query or parts.fragment or "?" in request.url or "#" in request.url:
        problems.append("query_or_fragment_in_path")
    path = parts.path
    if base_path and path.startswith(base_path):
        path = path[len(base_path) :]
    got = path.split("/")
    want = request.path_template.split("?", 1)[0].split("/")
    if len(got) != len(want):
        problems.append("segment_count")
    else:
        for seg, tmpl in zip(got, want, strict=True):
            if _PLACEHOLDER.match(tmpl):
                if not seg or unquote(seg, errors="replace") in (".", ".."):
                    problems.append("bad_segment")
            elif seg != tmpl:
                problems.append("literal_changed")
    if _CONTROL.search(request.url) or "\t" in request.url:
        # checked on the raw URL: urlsplit silently drops tabs and newlines
        problems.append("control_char_in_path")
    for name, value in request.headers.items():
        if _CONTROL.search(name) or _CONTROL.search(value):
            problems.append("control_char_in_header")
    for name, value in request.query:
        if "\x00" in name or "\x00" in value:
            problems.append("nul_in_query")
    return problems


def unsendable(request: Request) -> list[str]:
    """What a real transport could not put on the wire as UTF-8 and standard JSON."""
    problems: list[str] = []
    texts = [*request.headers.keys(), *request.headers.values(), request.url]
    texts.extend(t for pair in request.query for t in pair)
    try:
        for text in texts:
            text.encode()
    except UnicodeEncodeError:
        problems.append("unencodable_text")
    if request.has_body:
        try:
            json.dumps(request.json, ensure_ascii=False, allow_nan=False).encode()
        except (ValueError, TypeError, RecursionError) as exc:
            # ValueError: NaN/Infinity, or an integer too long to write; UnicodeEncodeError
            # (a ValueError) for a lone surrogate.
            problems.append(f"body_not_json ({type(exc).__name__})")
    return problems


def definitely_invalid(param: Param, value: Any) -> str | None:
    """Why `value` breaks the parameter's declared schema, judged independently; None if unsure.

    Only what JSON Schema makes unambiguous: the JSON type, bounds, enum and pattern (with
    JSON Schema's `$`, which does not match before a trailing newline). Formats normalise
    (e164 takes "555-123-4567"), so they are left to the validator's own tests.
    """
    kind = param.type
    if kind == "string":
        if not isinstance(value, str):
            return "not_text"
        if param.pattern is not None and _schema_regex(param.pattern).search(value) is None:
            return "pattern"
    elif kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "not_a_number"
        if isinstance(value, float) and not math.isfinite(value):
            return "not_finite"
        if kind == "integer" and isinstance(value, float) and not value.is_integer():
            return "fraction"
        if param.minimum is not None and value < param.minimum:
            return "below_minimum"
        if param.maximum is not None and value > param.maximum:
            return "above_maximum"
    elif kind == "boolean":
        if not isinstance(value, bool):
            return "not_bool"
    elif kind == "array":
        if not isinstance(value, list):
            return "not_a_list"
        if param.items is not None:
            for item in value:
                why = definitely_invalid(param.items, item)
                if why is not None:
                    return f"item_{why}"
    elif kind == "object" and not isinstance(value, dict):
        return "not_an_object"
    if param.enum is not None and not any(
        o == value and isinstance(o, bool) == isinstance(value, bool) for o in param.enum
    ):
        return "enum"
    return None


def _schema_regex(pattern: str) -> re.Pattern[str]:
    # ECMA-262 `$` without the multiline flag matches only at the very end: Python's `\Z`.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


COUNTS = (
    "unhandled_exceptions",
    "internal_errors",
    "non_envelope_results",
    "requests_for_invalid_arguments",
    "requests_off_template",
    "requests_unsendable",
    "invalid_values_accepted",
)


@dataclass
class Tally:
    """Counts of each kind of failure, and the first reproducer of each distinct one."""

    name: str
    cases: int = 0
    requests: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    first: dict[str, str] = field(default_factory=dict)

    def fail(self, count: str, signature: str, reproducer: str) -> None:
        """Count one failure; keep a reproducer for each distinct signature."""
        self.counts[count] += 1
        self.first.setdefault(f"{count}: {signature}", reproducer)

    def line(self, names: tuple[str, ...]) -> str:
        """The one-line summary printed by both the short and the long form."""
        counts = ", ".join(f"{n} {self.counts[n]}" for n in names)
        return (
            f"{self.name}: {self.cases} cases, {self.requests} requests; {counts}; "
            f"outcomes {dict(sorted(self.outcomes.items()))}"
        )

    def report(self, limit: int = 40) -> str:
        """The distinct failures, one line each."""
        lines = [f"{sig} <- {repro}" for sig, repro in list(self.first.items())[:limit]]
        return "\n".join(lines)


def short(text: str, limit: int = 40) -> str:
    """`text` as a bounded repr, for names a fuzz case made up."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[:limit]}...({len(text)} chars)"


def describe(tool: str, labels: Mapping[str, str], extra: str = "") -> str:
    """A one-line reproducer: the tool and which labelled value went into each argument."""
    shown = ", ".join(f"{short(k, 24)}={v}" for k, v in labels.items())
    return f"{short(tool)}({shown}){extra}"
