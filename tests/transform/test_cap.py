"""The size cap is never exceeded and always leaves valid JSON; handler results become JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from patchbay.spec._model import ResponseSpec
from patchbay.transform import cap_result, json_size, to_jsonable, transform_response

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300),
    lambda children: (
        st.lists(children, max_size=30)
        | st.dictionaries(st.text(max_size=40), children, max_size=12)
    ),
    max_leaves=200,
)


def assert_capped(out: Any, max_chars: int) -> None:
    text = json.dumps(out)
    assert len(text) <= max_chars
    assert json.loads(text) == out
    # compact and non-ASCII encodings are never longer than the measured one
    assert len(json.dumps(out, ensure_ascii=False, separators=(",", ":"))) <= max_chars


@settings(max_examples=400, deadline=None)
@given(value=json_values, max_chars=st.integers(min_value=20, max_value=3000))
def test_cap_is_never_exceeded(value: Any, max_chars: int) -> None:
    out = cap_result(value, max_chars)
    assert_capped(out, max_chars)
    if json_size(value) <= max_chars:
        assert out == value


@settings(max_examples=150, deadline=None)
@given(value=json_values, max_chars=st.integers(min_value=64, max_value=2000))
def test_transform_response_is_capped(value: Any, max_chars: int) -> None:
    spec = ResponseSpec(max_chars=max_chars, strip=("a",))
    assert_capped(transform_response(spec, value), max_chars)


INVOICES: list[dict[str, Any]] = [
    {"id": f"inv_{i}", "amount": 1000 + i, "due_date": "2024-07-01", "status": "open"}
    for i in range(50)
]


def test_long_lists_keep_fewer_items_and_say_so() -> None:
    out = cap_result({"customer": "Jamie", "invoices": INVOICES}, 600)
    assert_capped(out, 600)
    assert out["customer"] == "Jamie"
    shown = out["invoices"]
    assert shown["truncated"] is True
    assert shown["count"] == 50
    assert shown["more"] == 50 - len(shown["items"])
    assert 1 <= len(shown["items"]) < 50
    assert shown["items"] == INVOICES[: len(shown["items"])]


def test_long_strings_are_cut_after_lists() -> None:
    body = {"notes": "n" * 10_000, "invoices": INVOICES[:3]}
    out = cap_result(body, 1000)
    assert_capped(out, 1000)
    assert out["notes"].startswith("nnn") and out["notes"].endswith("...")
    assert len(out["notes"]) < 1000
    # short strings inside the kept items are left whole
    kept = out["invoices"]
    items = kept["items"] if isinstance(kept, dict) else kept
    assert all(i["due_date"] == "2024-07-01" for i in items)


def test_many_keys_and_tiny_caps() -> None:
    wide = {f"key_{i}": i for i in range(1000)}
    out = cap_result(wide, 200)
    assert_capped(out, 200)
    assert out["truncated"] is True
    assert out["key_0"] == 0
    assert cap_result(list(range(10**4)), 20) == {"truncated": True}
    assert cap_result("x" * 100, 20) == "x" * 15 + "..."
    with pytest.raises(ValueError):
        cap_result([], 10)


class Tier(Enum):
    GOLD = "gold"


@dataclass
class Invoice:
    id: str
    amount: Decimal
    due: date


class Customer(BaseModel):
    name: str
    since: datetime


def test_handler_results_become_json_types() -> None:
    value = {
        "invoice": Invoice("inv_1", Decimal("12.50"), date(2024, 7, 1)),
        "whole": Decimal("3"),
        "customer": Customer(name="Jamie", since=datetime(2024, 1, 2, 3, 4, tzinfo=UTC)),
        "tier": Tier.GOLD,
        "tags": {"b", "a"},
        "mixed": frozenset({1, "a"}),
        "wait": timedelta(seconds=90),
        "id": UUID(int=1),
        "pair": (1, 2),
        7: "seven",
        "nan": float("nan"),
    }
    out = cap_result(value, 4000)
    assert out == {
        "invoice": {"id": "inv_1", "amount": 12.5, "due": "2024-07-01"},
        "whole": 3,
        "customer": {"name": "Jamie", "since": "2024-01-02T03:04:00Z"},
        "tier": "gold",
        "tags": ["a", "b"],
        "mixed": out["mixed"],
        "wait": 90.0,
        "id": "00000000-0000-0000-0000-000000000001",
        "pair": [1, 2],
        "7": "seven",
        "nan": None,
    }
    assert sorted(map(str, out["mixed"])) == ["1", "a"]
    json.loads(json.dumps(out, allow_nan=False))


@pytest.mark.parametrize("bad", [object(), b"bytes", {"k": lambda: 1}, [1, {2, object()}]])
def test_non_json_handler_results_name_the_type(bad: Any) -> None:
    with pytest.raises(TypeError, match="cannot be turned into JSON") as info:
        cap_result(bad, 1000)
    assert any(name in str(info.value) for name in ("object", "bytes", "function"))


def test_bad_keys_and_self_reference() -> None:
    with pytest.raises(TypeError, match="keys must be text"):
        to_jsonable({(1, 2): "tuple key"})
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="nested too deeply"):
        cap_result(loop, 100)


def test_tuples_shrink_like_lists() -> None:
    out = cap_result({"ids": tuple(range(1000))}, 100)
    assert_capped(out, 100)
    assert out["ids"]["truncated"] is True
    assert out["ids"]["count"] == 1000
