"""Retell custom functions: X-Retell-Signature exactly as retell-sdk verifies it, both payloads."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from patchbay.gateway import sign_retell, verify_retell_signature
from patchbay.gateway._retell import retell_call

from .gateway_support import CALLER, RETELL_KEY, StackFactory, bearer, fixture, small_config
from .surfaces import retell_body


def _reference_signature(body: bytes, key: str, ts: int) -> str:
    # retell-sdk webhook_auth.py: HMAC-SHA256(key, body + str(ts)).hexdigest(), "v=<ts>,d=<hex>"
    digest = hmac.new(key.encode(), body + str(ts).encode(), hashlib.sha256).hexdigest()
    return f"v={ts},d={digest}"


def test_both_documented_payloads_are_read() -> None:
    wrapped = fixture("retell_custom_function.json")
    args, ctx = retell_call("get_weather", wrapped, {}, {}, None)
    assert args == {"city": "New York"}
    assert ctx is not None
    assert (ctx.id, ctx.caller) == ("Jabr9TXYYJHfvl6Syypi88rdAHYHmcq6", "+12137771234")
    bare = fixture("retell_args_at_root.json")
    args, ctx = retell_call("get_weather", bare, {"call_id": "c-9"}, {}, "acme")
    assert args == {"city": "New York"}
    assert ctx is not None and (ctx.id, ctx.caller, ctx.tenant) == ("c-9", None, "acme")
    assert retell_call("get_weather", bare, {}, {}, None) == ({"city": "New York"}, None)


def test_signing_matches_the_sdk_scheme() -> None:
    body = b'{"name":"x","args":{}}'
    assert sign_retell(body, "k", timestamp_ms=1703302407333) == _reference_signature(
        body, "k", 1703302407333
    )


def test_verify_accepts_fresh_and_refuses_stale_wrong_or_garbled() -> None:
    body = b'{"args":{"city":"New York"}}'
    now = 1_750_000_000_000
    good = _reference_signature(body, "key", now - 1000)
    assert verify_retell_signature(body, good, "key", now_ms=now)
    assert not verify_retell_signature(body, good, "other-key", now_ms=now)
    assert not verify_retell_signature(body + b" ", good, "key", now_ms=now)
    stale = _reference_signature(body, "key", now - 5 * 60 * 1000 - 1)
    assert not verify_retell_signature(body, stale, "key", now_ms=now)
    future = _reference_signature(body, "key", now + 5 * 60 * 1000 + 1)
    assert not verify_retell_signature(body, future, "key", now_ms=now)
    assert not verify_retell_signature(body, "d=abc", "key", now_ms=now)
    assert not verify_retell_signature(body, None, "key", now_ms=now)
    assert not verify_retell_signature(body, f"v={now},d=é", "key", now_ms=now)


async def test_the_documented_request_with_a_good_signature_runs(stack: StackFactory) -> None:
    raw = retell_body("echo", {"text": "hello"}, "retell-call-1")
    async with stack(small_config()) as s:
        status, data = await s.post(
            "/retell/echo", raw=raw, **{"X-Retell-Signature": sign_retell(raw, RETELL_KEY)}
        )
    assert status == 200
    assert data == {
        "ok": True,
        "result": {"text": "hello", "call_id": "retell-call-1", "caller": CALLER, "tenant": None},
    }


async def test_the_caller_of_an_outbound_call_is_the_number_dialled(stack: StackFactory) -> None:
    body = fixture("retell_custom_function.json")
    body.update(name="echo", args={"text": "x"})
    body["call"]["direction"] = "outbound"
    raw = json.dumps(body).encode()
    async with stack(small_config()) as s:
        status, data = await s.post(
            "/retell/echo", raw=raw, **{"X-Retell-Signature": sign_retell(raw, RETELL_KEY)}
        )
    assert status == 200
    assert data["result"]["caller"] == body["call"]["to_number"]
    assert data["result"]["call_id"] == body["call"]["call_id"]


async def test_bad_stale_and_missing_signatures_are_refused(stack: StackFactory) -> None:
    raw = retell_body("echo", {"text": "hello"}, "retell-call-2")
    stale = sign_retell(raw, RETELL_KEY, timestamp_ms=int(time.time() * 1000) - 6 * 60 * 1000)
    cases = {
        "wrong key": {"X-Retell-Signature": sign_retell(raw, "not-the-key")},
        "stale": {"X-Retell-Signature": stale},
        "garbled": {"X-Retell-Signature": "nonsense"},
        "missing": {},
        # A valid bearer token does not stand in for Retell's signature.
        "bearer only": bearer(),
    }
    async with stack(small_config()) as s:
        for label, headers in cases.items():
            status, data = await s.post("/retell/echo", raw=raw, **headers)
            assert status == 401, label
            assert data["ok"] is False and data["error"] == "unauthorized", label
        tampered = raw.replace(b"hello", b"HELLO")
        status, _ = await s.post(
            "/retell/echo", raw=tampered, **{"X-Retell-Signature": sign_retell(raw, RETELL_KEY)}
        )
        assert status == 401
        assert not s.events.of_kind("tool_call")  # nothing refused ever reached the runtime


async def test_args_at_root_takes_the_call_from_the_query(stack: StackFactory) -> None:
    raw = json.dumps({"text": "root"}).encode()
    async with stack(small_config()) as s:
        status, data = await s.post(
            "/retell/echo?call_id=rc-7&caller=%2B15550001111",
            raw=raw,
            **{"X-Retell-Signature": sign_retell(raw, RETELL_KEY)},
        )
    assert status == 200
    assert data["result"] == {
        "text": "root",
        "call_id": "rc-7",
        "caller": "+15550001111",
        "tenant": None,
    }


async def test_a_body_naming_another_function_is_refused(stack: StackFactory) -> None:
    raw = retell_body("slow", {"seconds": 0}, "rc-8")
    async with stack(small_config()) as s:
        status, data = await s.post(
            "/retell/echo", raw=raw, **{"X-Retell-Signature": sign_retell(raw, RETELL_KEY)}
        )
    assert status == 400
    assert data == {
        "ok": False,
        "error": "bad_request",
        "message": "The body calls 'slow' but the URL names 'echo'.",
    }
