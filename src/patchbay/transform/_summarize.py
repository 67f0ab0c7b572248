"""Making results small enough to speak from: list summaries, JSON conversion, the size cap."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Set
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from pydantic import BaseModel

MIN_CAP = 20  # room for the last-resort answer, {"truncated": true}
_LAST_RESORT: dict[str, Any] = {"truncated": True}
_ELLIPSIS = "..."  # ASCII: "…" would count as six characters once escaped
_MAX_DEPTH = 200

# Python's defaults (ASCII escapes, ", " and ": ") give the longest of the usual encodings of
# a value, so a result within the cap here is within it however the caller serialises it.
_encode = json.JSONEncoder(allow_nan=False).encode


def json_size(value: Any) -> int:
    """Characters of `value` as JSON with Python's default json.dumps settings."""
    return len(_encode(value))


def summarize_list(
    items: list[Any],
    *,
    top: int,
    items_as: str,
    count_as: str,
    totals: Mapping[str, Callable[[Any], Any]],
) -> dict[str, Any]:
    """The first `top` items, how many there are, sums of item fields, how many are not shown."""
    out: dict[str, Any] = {items_as: items[:top], count_as: len(items)}
    for name, get in totals.items():
        total: int | float = 0
        for item in items:
            found = get(item)
            if isinstance(found, int | float) and not isinstance(found, bool):
                total += found
        # Float sums pick up binary noise (12.34 + 0.01 = 12.350000000000001) an LLM would read out.
        out[name] = round(total, 9) if isinstance(total, float) else total
    out["more"] = max(0, len(items) - top)
    return out


def _key(key: Any) -> str:
    if isinstance(key, str):
        return str(key)
    if isinstance(key, Enum):
        return _key(key.value)
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)  # the key json.dumps itself would write
    raise TypeError(f"a result's keys must be text; {type(key).__name__} is not")


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """`value` as plain JSON types: dataclasses, pydantic models, dates, Decimals, sets converted.

    Raises TypeError naming the type of anything else, ValueError for self-containing values.
    """
    if _depth > _MAX_DEPTH:
        raise ValueError("a result is nested too deeply (or contains itself)")
    if value is None or type(value) in (str, bool, int):
        return value
    if isinstance(value, Enum):
        return to_jsonable(value.value, _depth + 1)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return str(value)
    deeper = _depth + 1
    if isinstance(value, Mapping):
        return {_key(k): to_jsonable(v, deeper) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v, deeper) for v in value]
    if isinstance(value, Set):
        items = [to_jsonable(v, deeper) for v in value]
        try:
            return sorted(items)
        except TypeError:  # mixed types: any order is as good as another
            return sorted(items, key=_encode)
    if isinstance(value, BaseModel):
        return to_jsonable(value.model_dump(mode="json"), deeper)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name), deeper) for f in dataclasses.fields(value)
        }
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(
        f"a tool result must be JSON data; {type(value).__name__} cannot be turned into JSON "
        "(return dicts, lists, text, numbers, booleans, None, dataclasses or pydantic models)"
    )


def _prune(value: Any, lists: int | None, strings: int | None, keys: int | None) -> Any:
    """A copy with at most `lists` items per list, `strings` characters per string, `keys` keys
    per object; a shortened list becomes {items, count, more, truncated}."""
    if isinstance(value, str):
        if strings is not None and len(value) > strings:
            return value[:strings] + _ELLIPSIS
        return value
    if isinstance(value, dict):
        entries = list(value.items())
        cut = keys is not None and len(entries) > keys
        if cut:
            entries = entries[:keys]
        out = {k: _prune(v, lists, strings, keys) for k, v in entries}
        if cut:
            out["truncated"] = True
        return out
    if isinstance(value, list | tuple):  # json.dumps writes tuples as lists
        if lists is not None and len(value) > lists:
            kept = [_prune(v, lists, strings, keys) for v in value[:lists]]
            return {
                "items": kept,
                "count": len(value),
                "more": len(value) - lists,
                "truncated": True,
            }
        return [_prune(v, lists, strings, keys) for v in value]
    return value


def _extent(value: Any) -> tuple[int, int, int]:
    """The longest list, string and object in `value`: where each limit stops mattering."""
    longest = [0, 0, 0]
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            longest[1] = max(longest[1], len(v))
        elif isinstance(v, dict):
            longest[2] = max(longest[2], len(v))
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            longest[0] = max(longest[0], len(v))
            stack.extend(v)
    return longest[0], longest[1], longest[2]


def _largest(fits: Callable[[int], bool], lo: int, hi: int) -> int:
    """The largest n in [lo, hi] found to fit, given that `lo` fits.

    Gallops up from `lo` before bisecting: the answer is usually small next to `hi` (a few
    items of a long list), and small candidates are cheap to build and measure.
    """
    step = 1
    while lo < hi:
        probe = min(lo + step, hi)
        if not fits(probe):
            hi = probe - 1
            break
        lo, step = probe, step * 2
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _shrink(value: Any, max_chars: int) -> Any:
    def size_ok(lists: int | None, strings: int | None, keys: int | None) -> bool:
        return json_size(_prune(value, lists, strings, keys)) <= max_chars

    # Fewer list items first: long answers are nearly always long lists. A list of n items
    # takes at least 2n characters, which bounds n without walking the whole value.
    if size_ok(0, None, None):
        n = _largest(lambda n: size_ok(n, None, None), 0, max_chars // 2)
        return _prune(value, n, None, None)
    if not size_ok(0, 0, 0):
        return dict(_LAST_RESORT)
    max_list, max_str, max_keys = _extent(value)
    # Then widen one limit at a time, most valuable first, each as far as the cap allows:
    # keys (the answer's shape), strings up to a modest length, list items, longer strings.
    keys = _largest(lambda k: size_ok(0, 0, k), 0, max_keys)
    modest = min(max_str, max(16, max_chars // 8))
    strings = _largest(lambda s: size_ok(0, s, keys), 0, modest)
    lists = _largest(lambda n: size_ok(n, strings, keys), 0, max_list)
    strings = _largest(lambda s: size_ok(lists, s, keys), strings, max_str)
    return _prune(value, lists, strings, keys)


def cap(value: Any, max_chars: int) -> Any:
    """`value` as JSON types, shrunk until its JSON is at most `max_chars` characters."""
    if max_chars < MIN_CAP:
        raise ValueError(f"max_chars must be at least {MIN_CAP}")
    try:
        # Most values are JSON already: one C-speed encode proves it and measures them.
        size = json_size(value)
    except (TypeError, ValueError):  # NaN from an upstream, or objects from a handler
        value = to_jsonable(value)
        size = json_size(value)
    if size <= max_chars:
        return value
    return _shrink(value, max_chars)


def cap_result(value: Any, max_chars: int) -> Any:
    """A Python handler's result as JSON types, within `max_chars` characters of JSON.

    Dataclasses, pydantic models, dates, Decimals, enums, UUIDs and sets are converted;
    anything else is a TypeError naming its type.
    """
    return cap(value, max_chars)
