"""Responses as stored bytes, and keys that never carry arguments."""

from __future__ import annotations

from patchbay.http._types import Response
from patchbay.policies._shared import decode_response, digest, encode_response


def test_a_response_survives_the_store() -> None:
    original = Response(201, {"Content-Type": "application/json"}, b'{"a":\n1}\x00\xff')
    decoded = decode_response(encode_response(original, f="abc", t=12.5))
    assert decoded is not None
    response, head = decoded
    assert (response.status, dict(response.headers), response.body) == (
        original.status,
        dict(original.headers),
        original.body,
    )
    assert head["f"] == "abc" and head["t"] == 12.5


def test_bytes_it_did_not_write_are_not_responses() -> None:
    for raw in (b"", b"pending abc", b"not json\nbody", b'{"h":{}}\nbody', b'{"s":"x"}\n'):
        assert decode_response(raw) is None


def test_digests_are_stable_short_and_opaque() -> None:
    one = digest("acme", "GET", "http://x/customers?phone=%2B15551234567", [("a", "1")])
    assert one == digest("acme", "GET", "http://x/customers?phone=%2B15551234567", [("a", "1")])
    assert one != digest("globex", "GET", "http://x/customers?phone=%2B15551234567", [("a", "1")])
    assert len(one) == 32 and "1555" not in one
