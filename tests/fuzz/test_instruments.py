"""The fuzz tests' own checks catch what they are there to catch: a harness that passes
everything would look exactly like a hardened patchbay."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from patchbay import ErrorInfo, ToolResult
from patchbay.http import Request
from patchbay.spec import Param

from .asgi import Answer, AsgiClient
from .support import definitely_invalid, request_problems, unsendable
from .test_gateway_fuzz import answer_problem
from .test_runtime_fuzz import envelope_problem

BASE = "http://127.0.0.1:9/api"


def _request(path: str, template: str = "/things/{id}", **kw: Any) -> Request:
    return Request("GET", BASE + path, template, "svc", "get_thing", **kw)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/things/%2E%2E", "bad_segment"),
        ("/things/.", "bad_segment"),
        ("/things/", "bad_segment"),
        ("/things/a/b", "segment_count"),
        ("/things/a?admin=1", "query_or_fragment_in_path"),
        ("/things/a#x", "query_or_fragment_in_path"),
        ("/stuff/a", "literal_changed"),
        ("/things/a%0Ab\n", "control_char_in_path"),
    ],
)
def test_requests_off_their_template_are_caught(path: str, why: str) -> None:
    assert why in request_problems(_request(path), "/api")


def test_a_request_on_its_template_passes() -> None:
    fine = _request("/things/a%2Fb%3F", headers={"X-Note": "tab\tis fine"})
    assert request_problems(fine, "/api") == []
    assert unsendable(fine) == []


def test_control_characters_in_headers_are_caught() -> None:
    bad = _request("/things/a", headers={"Idempotency-Key": "k\x07"})
    assert request_problems(bad, "/api") == ["control_char_in_header"]


def test_what_no_transport_can_send_is_caught() -> None:
    assert unsendable(_request("/things/a", headers={"X": "\ud800"})) == ["unencodable_text"]
    body = _request("/things/a", json={"n": float("nan")}, has_body=True)
    assert unsendable(body) == ["body_not_json (ValueError)"]
    huge = _request("/things/a", json={"n": 10**5000}, has_body=True)
    assert unsendable(huge) == ["body_not_json (ValueError)"]


@pytest.mark.parametrize(
    ("param", "value", "why"),
    [
        (Param(type="string", pattern="^cus_[a-z]+$"), "cus_ab\n", "pattern"),
        (Param(type="string"), 12, "not_text"),
        (Param(type="integer"), True, "not_a_number"),
        (Param(type="integer"), 1.5, "fraction"),
        (Param(type="number"), float("nan"), "not_finite"),
        (Param(type="integer", minimum=1), 0, "below_minimum"),
        (Param(type="string", enum=("a", "b")), "c", "enum"),
        (Param(type="array", items=Param(type="integer")), [1, "2"], "item_not_a_number"),
    ],
)
def test_values_the_schema_refuses_are_judged_invalid(param: Param, value: Any, why: str) -> None:
    assert definitely_invalid(param, value) == why


def test_values_the_schema_accepts_are_not_judged() -> None:
    assert definitely_invalid(Param(type="string", pattern="^cus_[a-z]+$"), "cus_ab") is None
    assert definitely_invalid(Param(type="integer", maximum=5), 5.0) is None


def test_envelopes_that_break_the_contract_are_caught() -> None:
    fine = ToolResult(ok=True, tool="t", call_id="c", result={"a": 1}, meta={})
    assert envelope_problem(fine, "t", "c", 4000) is None
    wordy = ToolResult(ok=False, tool="t", call_id="c", error=ErrorInfo("internal", "x" * 5000))
    assert envelope_problem(wordy, "t", "c", 4000) == "llm text over max_chars"
    unknown = ToolResult(ok=False, tool="t", call_id="c", error=ErrorInfo("oops", "x"))
    assert envelope_problem(unknown, "t", "c", 4000) == "error code 'oops'"
    assert envelope_problem({"ok": True}, "t", "c", 4000) == "not a ToolResult: dict"


@pytest.mark.parametrize(
    ("answer", "bad"),
    [
        (Answer(500, {"content-type": "application/json"}, b"{}"), True),
        (Answer(413, {}, b"Request body too large"), True),
        (Answer(400, {"content-type": "application/json"}, b"{oops"), True),
        (Answer(200, {"content-type": "application/json"}, b'{"ok": true}'), False),
        (
            Answer(
                200, {"content-type": "text/event-stream"}, b'event: message\ndata: {"a":1}\n\n'
            ),
            False,
        ),
        (Answer(202, {}, b""), False),
    ],
)
def test_answers_that_are_not_json_or_fail_are_caught(answer: Answer, bad: bool) -> None:
    assert (answer_problem(answer) is not None) is bad


async def test_the_asgi_client_reports_what_the_app_does() -> None:
    async def echo(request: StarletteRequest) -> Response:
        return JSONResponse({"body": len(await request.body()), "q": request.url.query})

    async def boom(request: StarletteRequest) -> Response:
        raise RuntimeError("boom")

    app = Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/boom", boom)])
    async with AsgiClient(app) as client:
        answer = await client.request("POST", "/echo", b"x" * 1000, query=b"a=1", chunks=7)
        assert (answer.status, answer.body) == (200, b'{"body":1000,"q":"a=1"}')
        with pytest.raises(RuntimeError):
            await client.request("GET", "/boom")
