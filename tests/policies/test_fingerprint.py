"""A write's fingerprint (what makes a resend the same write) comes out for any body.

A handler's body is not validated: it may hold what JSON cannot write. The idempotency policy
fingerprints every keyed write, so a fingerprint that raised would turn such a call into an
`internal` failure instead of whatever the upstream makes of the body.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from patchbay.http import Request
from patchbay.policies._shared import request_fingerprint


def deep_object(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def write(body: Any) -> Request:
    return Request(
        method="POST",
        url="https://billing.example.test/api/payments",
        path_template="/payments",
        integration="billing",
        tool="create_payment",
        query=(("b", "2"), ("a", "1")),
        json=body,
        has_body=True,
    )


BODIES = [
    deep_object(5000),
    deep_object(5001),
    {"n": 10**5000},
    {"n": 10**5000 + 1},
    {1: "one", "b": 2},
    {"\ud800": "\udfff"},
    {"n": math.nan},
    [10**5000, deep_object(3000)],
]
IDS = ["deep", "deeper", "huge", "huge_plus_1", "mixed_keys", "surrogates", "nan", "mix"]


@pytest.mark.parametrize("body", BODIES, ids=IDS)
def test_any_body_has_a_stable_fingerprint(body: Any) -> None:
    found = request_fingerprint(write(body))
    assert re.fullmatch(r"[0-9a-f]{32}", found)
    assert request_fingerprint(write(body)) == found


def test_different_bodies_have_different_fingerprints() -> None:
    found = {request_fingerprint(write(body)) for body in BODIES}
    assert len(found) == len(BODIES)


def test_an_ordinary_fingerprint_is_what_it_always_was() -> None:
    # Ledgers written by earlier versions compare against this value: it must not move.
    body = {"invoice_id": "inv_1001", "amount": 24700, "memo": "café", "n": None}
    assert request_fingerprint(write(body)) == "2acdc425f69b567647246bfd00e85b55"
