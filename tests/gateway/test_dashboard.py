"""The operators' dashboard: its figures, its door, and the page in a real headless browser."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from patchbay.gateway._dashboard import DASHBOARD_CSP
from patchbay.observe import Event
from patchbay.observe._board import LiveBoard, Sketch
from patchbay.policies._readout import breaker_scopes, read_breaker
from patchbay.spec import Config, GatewayAuth, GatewayTenant, RateLimitSpec, load_config_text
from patchbay.state import MemoryStore

from .dashboard_browser import Browser
from .gateway_support import HERE, TOKEN, StackFactory, bearer, example_config, full_auth, with_auth

ARTIFACTS = HERE.parents[1] / ".artifacts"
PHONE = "+15551234567"
EMAIL = "jamie.patel@example.com"


class Clock:
    """A wall clock the test moves."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def call(tool: str, outcome: str = "ok", ms: float = 10.0, ts: float = 0.0, **kw: Any) -> Event:
    return Event(kind="tool_call", tool=tool, latency_ms=ms, outcome=outcome, ts=ts, **kw)


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


# -- the figures ---------------------------------------------------------------------------


def test_percentiles_are_within_four_percent_of_the_exact_ones() -> None:
    values = [0.3 + (i * 7919 % 4000) / 3.0 for i in range(4000)]  # 0.3 ms .. 1.3 s, shuffled
    sketch = Sketch()
    for v in values:
        sketch.add(v)
    for q in (0.5, 0.95, 0.99, 1.0):
        got = sketch.percentile(q)
        assert got is not None
        assert abs(got - exact(values, q)) / exact(values, q) <= 0.04, q
    assert Sketch().percentile(0.5) is None


def test_tool_figures_count_rates_successes_codes_and_latency() -> None:
    clock = Clock()
    board = LiveBoard(tools=["a", "b"], clock=clock)
    now = clock.now
    for i in range(90):  # a's calls: 90 over the last 90 s, one in ten failing
        outcome = "timeout" if i % 10 == 0 else "ok"
        board.emit(call("a", outcome, ms=100.0 + i, ts=now - 89 + i))
    board.emit(call("b", "not_found", ms=5.0, ts=now - 200))
    rows = {r["tool"]: r for r in board.tools_figures()}
    a, b = rows["a"], rows["b"]
    assert a["calls"] == 90
    assert a["success_rate"] == pytest.approx(81 / 90, abs=1e-4)
    assert a["errors"] == {"timeout": 9}
    # The last minute's calls (from the first slice of that minute to now), per minute.
    minute = [t for t in range(90) if now - 89 + t >= (math.floor(now / 10) - 5) * 10]
    covered = now - (math.floor(now / 10) - 5) * 10
    assert a["rate_per_min"] == pytest.approx(len(minute) * 60 / covered, abs=0.01)
    latencies = [100.0 + i for i in range(90)]
    assert a["p50_ms"] == pytest.approx(exact(latencies, 0.5), rel=0.04)
    assert a["p99_ms"] == pytest.approx(exact(latencies, 0.99), rel=0.04)
    assert b == {
        "tool": "b",
        "calls": 1,
        "rate_per_min": 0.0,  # 200 s ago: in the window, not in the last minute
        "success_rate": 0.0,
        "p50_ms": pytest.approx(5.0, rel=0.04),
        "p95_ms": pytest.approx(5.0, rel=0.04),
        "p99_ms": pytest.approx(5.0, rel=0.04),
        "errors": {"not_found": 1},
    }
    clock.now += 301  # everything has left the five-minute window
    board.prune()
    assert board.tools_figures() == []
    assert board.tool_calls.series == {}


def test_endpoint_figures_and_sends_per_integration() -> None:
    clock = Clock()
    board = LiveBoard(clock=clock)
    for i, outcome in enumerate(["ok", "ok", "http_503", "timeout"]):
        board.emit(
            Event(
                kind="attempt",
                tool="t",
                integration="billing",
                method="GET",
                path="/customers/{id}",
                latency_ms=20.0 * (i + 1),
                outcome=outcome,
                ts=clock.now - 5,
            )
        )
    for outcome in ("rate_wait", "rate_wait", "rate_limited", "retry"):
        board.emit(
            Event(kind="policy", tool="t", integration="billing", outcome=outcome, ts=clock.now)
        )
    (row,) = board.endpoint_figures()
    assert row["integration"] == "billing" and row["path"] == "/customers/{id}"
    assert row["calls"] == 4 and row["success_rate"] == 0.5
    assert row["errors"] == {"http_503": 1, "timeout": 1}
    sends = board.sends("billing", lambda label: True)
    assert sends["sent"] == 4
    assert (sends["waits"], sends["refused"], sends["retries"]) == (2, 1, 1)
    assert board.sends("other", lambda label: True)["sent"] == 0


def test_memory_is_bounded_whatever_names_callers_make_up() -> None:
    clock = Clock()
    board = LiveBoard(clock=clock, max_series=50, recent=20, window_s=60, slice_s=10)
    for i in range(5000):
        clock.now += 0.5
        board.emit(call(f"tool-{i}", ts=clock.now, tenant=f"tenant-{i}"))
        board.emit(
            Event(kind="attempt", tool="x", integration=f"i{i}", method="GET", path=f"/p{i}",
                  outcome=f"http_{400 + i % 100}", ts=clock.now)
        )  # fmt: skip
    assert len(board.tool_calls.series) <= 50
    assert len(board.attempts.series) <= 50
    assert ("other", "other") in board.tool_calls.series  # later names counted together
    assert len(board.recent) == 20
    for family in (board.tool_calls, board.attempts):
        for series in family.series.values():
            assert len(series.slices) <= 6  # 60 s in slices of 10 s
            for s in series.slices:
                assert len(s.codes) <= 33  # MAX_CODES and `other`
    # Known names: one label for every unknown tool and one for every unknown tenant.
    known = LiveBoard(tools=["lookup"], tenants=["acme"], clock=clock)
    for i in range(100):
        known.emit(call(f"made-up-{i}", ts=clock.now, tenant=f"t{i}"))
    assert set(known.tool_calls.series) == {("other", "unknown")}


def test_recent_calls_keep_no_arguments_callers_or_call_ids() -> None:
    clock = Clock()
    board = LiveBoard(tools=["lookup"], tenants=["acme"], clock=clock)
    board.emit(
        call(
            "lookup",
            "not_found",
            ms=12.345,
            ts=clock.now,
            call_id="call-7731-secret",
            tenant="acme",
            integration="billing",
            attempt=2,
            extra={"phone": PHONE, "email": EMAIL, "args": {"phone": PHONE}, "cached": False},
        )
    )
    board.emit(
        Event(kind="anomaly", tool="lookup", tenant="acme", outcome="blocked", ts=clock.now,
              extra={"kind": "per_minute", "count": 61, "limit": 60, "caller": PHONE})
    )  # fmt: skip
    shown = json.dumps([board.recent_calls(), board.listed(board.anomalies, None)])
    for secret in (PHONE, EMAIL, "call-7731-secret"):
        assert secret not in shown
    (recent,) = board.recent_calls()
    assert recent == {
        "ts": clock.now,
        "tool": "lookup",
        "integration": "billing",
        "tenant": "acme",
        "outcome": "error",
        "code": "not_found",
        "latency_ms": 12.3,
        "attempts": 2,
        "cached": False,
    }
    (anomaly,) = board.listed(board.anomalies, "acme")
    assert (anomaly["kind"], anomaly["action"], anomaly["count"]) == ("per_minute", "blocked", 61)
    assert board.listed(board.anomalies, "globex") == []


def test_deprecations_and_unmatched_webhooks_are_listed_without_payloads() -> None:
    board = LiveBoard()
    board.emit(
        Event(kind="deprecation", tool="get_customer", integration="billing", method="GET",
              path="/customers/{id}", extra={"endpoint": "GET /customers/{id}",
              "deprecated": True, "sunset": "2027-01-01T00:00:00Z",
              "words": "deprecated, sunset on 2027-01-01T00:00:00Z"})
    )  # fmt: skip
    board.emit(
        Event(kind="webhook_unmatched", tool="", integration="billing",
              extra={"source": "billing", "type": "payment.succeeded",
                     "payload": {"phone": PHONE}, "reason": "no live call"})
    )  # fmt: skip
    (dep,) = board.listed(board.deprecations, None)
    assert dep["endpoint"] == "GET /customers/{id}" and dep["sunset"].startswith("2027")
    (hook,) = board.listed(board.unmatched, None)
    assert (hook["source"], hook["type"], hook["reason"]) == (
        "billing",
        "payment.succeeded",
        "no live call",
    )
    assert PHONE not in json.dumps(hook)


async def test_breaker_state_is_read_from_the_shared_store() -> None:
    store = MemoryStore()
    now = 1_800_000_000.0
    assert (await read_breaker(store, "billing", now=now)).state == "closed"
    await store.set("brk:billing", b"o 3 %.3f" % (now + 30))
    reading = await read_breaker(store, "billing", now=now)
    assert (reading.state, reading.open_until) == ("open", pytest.approx(now + 30))
    assert (await read_breaker(store, "billing", now=now + 31)).state == "half_open"
    await store.set("brk:billing:acme:GET /x", b"c 4")
    assert (await read_breaker(store, "billing:acme", "GET /x", now=now)).state == "closed"
    text = TENANT_CONFIG.replace("globex: {}", "globex: {base_url: http://g}")
    integ = load_config_text(text, base_dir=HERE)
    assert breaker_scopes(integ.integrations["local"]) == [
        ("local", None),
        ("local:globex", "globex"),
    ]


# -- the door --------------------------------------------------------------------------------

TENANT_CONFIG = """
version: 1
integrations:
  local:
    base_url: "http://127.0.0.1:9"
    tenants: {acme: {}, globex: {}}
    rate_limit: {per_second: 50, burst: 5}
tools:
  echo:
    integration: local
    description: Repeat the text.
    parameters:
      text: {type: string}
    handler: gateway_tools:echo
  broken:
    integration: local
    description: Always fails.
    handler: gateway_tools:broken
"""
ACME_TOKEN = "tok-acme-dash-1c"
GLOBEX_TOKEN = "tok-globex-dash-2d"


def basic(password: str, user: str = "ops") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def tenant_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PB_DASH_ACME", ACME_TOKEN)
    monkeypatch.setenv("PB_DASH_GLOBEX", GLOBEX_TOKEN)


def tenant_config() -> Config:
    auth = GatewayAuth(
        bearer="env:PB_TEST_TOKEN",
        tenants={
            "acme": GatewayTenant(bearer="env:PB_DASH_ACME"),
            "globex": GatewayTenant(bearer="env:PB_DASH_GLOBEX"),
        },
    )
    return with_auth(load_config_text(TENANT_CONFIG, base_dir=HERE), auth)


async def test_every_dashboard_route_refuses_callers_without_the_credential(
    stack: StackFactory, tenant_tokens: None
) -> None:
    async with stack(tenant_config()) as s:
        for path in ("/dashboard", "/dashboard/data", "/dashboard/dashboard.js"):
            for headers in ({}, bearer("wrong"), basic("wrong"), {"Authorization": "Basic %%%"}):
                async with s.session.get(s.url + path, headers=headers) as answer:
                    assert answer.status == 401, (path, headers)
                    body = json.loads(await answer.read())
                    assert body["error"]["code"] == "unauthorized"
                    challenges = answer.headers.getall("WWW-Authenticate")
                    assert any(c.startswith("Basic ") for c in challenges)
                    assert any(c.startswith("Bearer ") for c in challenges)
        status, _ = await s.get("/dashboard/nothing.js", **bearer())
        assert status == 404


async def test_the_page_and_its_files_come_from_the_gateway_under_a_strict_policy(
    stack: StackFactory, tenant_tokens: None
) -> None:
    async with stack(tenant_config()) as s:
        for headers in (bearer(), basic(TOKEN), basic(TOKEN, user="")):
            async with s.session.get(s.url + "/dashboard", headers=headers) as answer:
                assert answer.status == 200
                assert answer.headers["Content-Security-Policy"] == DASHBOARD_CSP
                assert answer.content_type == "text/html"
                page = await answer.text()
        assert "dashboard/dashboard.js" in page and "dashboard/dashboard.css" in page
        assert "http://" not in page and "https://" not in page  # nothing from elsewhere
        for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
            async with s.session.get(s.url + "/dashboard/" + name, headers=bearer()) as answer:
                assert answer.status == 200 and answer.content_type == kind
                assert "https://" not in await answer.text()
        assert "'self'" in DASHBOARD_CSP and "unsafe-inline" not in DASHBOARD_CSP


async def data(s: Any, headers: dict[str, str]) -> dict[str, Any]:
    async with s.session.get(s.url + "/dashboard/data", headers=headers) as answer:
        assert answer.status == 200, await answer.text()
        assert answer.headers["Cache-Control"] == "no-store"
        found: dict[str, Any] = json.loads(await answer.read())
        return found


async def test_a_tenant_sees_only_its_own_figures(stack: StackFactory, tenant_tokens: None) -> None:
    async with stack(tenant_config()) as s:
        for _ in range(3):
            await s.post("/tools/echo", {"arguments": {"text": EMAIL}}, **bearer(ACME_TOKEN))
        await s.post("/tools/broken", {"arguments": {}}, **bearer(GLOBEX_TOKEN))
        operator = await data(s, bearer())
        acme = await data(s, basic(ACME_TOKEN))
        globex = await data(s, bearer(GLOBEX_TOKEN))
    tools = {r["tool"]: r for r in operator["tools"]}
    assert operator["view"] == "operator"
    assert (tools["echo"]["calls"], tools["broken"]["calls"]) == (3, 1)
    assert tools["broken"]["errors"] == {"upstream_unavailable": 1}
    assert {c["tenant"] for c in operator["recent"]} == {"acme", "globex"}
    mine = {r["tool"]: r for r in acme["tools"]}
    assert acme["view"] == "tenant acme"
    assert (mine["echo"]["calls"], mine["broken"]["calls"]) == (3, 0)
    assert {c["tenant"] for c in acme["recent"]} == {"acme"}
    theirs = {r["tool"]: r for r in globex["tools"]}
    assert (theirs["echo"]["calls"], theirs["broken"]["errors"]) == (0, {"upstream_unavailable": 1})
    (limit,) = operator["integrations"][0]["rate_limits"]
    assert limit["per_second"] == 50 and limit["burst"] == 5 and not limit["shared"]
    assert acme["integrations"][0]["rate_limits"][0]["shared"]
    for view in (operator, acme, globex):
        assert EMAIL not in json.dumps(view)


# -- the page in a browser ----------------------------------------------------------------

DOWN = """
version: 1
integrations:
  down:
    base_url: "http://127.0.0.1:9"
    timeout_s: 0.5
    retry: {attempts: 1}
    breaker: {failure_rate: 0.5, window: 4, min_calls: 2, open_s: 120}
tools:
  ping_down:
    integration: down
    description: Ask a system that is down.
    request: {method: GET, path: /ping}
"""


def browser_config(billing_url: str) -> Config:
    """The billing example with a rate limit, and a tool whose system is down (port 9)."""
    cfg = example_config(billing_url, full_auth())
    limited = cfg.integrations["billing"].model_copy(
        update={"rate_limit": RateLimitSpec(per_second=40, burst=10)}
    )
    down = load_config_text(DOWN)
    integrations = {**cfg.integrations, "billing": limited, **down.integrations}
    return cfg.model_copy(
        update={"integrations": integrations, "tools": {**cfg.tools, **down.tools}}
    )


async def test_the_page_renders_live_figures_in_headless_chromium(
    stack: StackFactory,
    billing: Any,
    tmp_path: Path,
    require_binary: Callable[..., str],
) -> None:
    chromium = require_binary("chromium", "chromium-browser", package="chromium")
    async with stack(browser_config(billing.url)) as s:
        calls = [
            ("get_customer", {"customer_id": "cus_8F2kLq"}),
            ("get_customer", {"customer_id": "cus_8F2kLq"}),
            ("get_customer", {"customer_id": "cus_unknown"}),
            ("lookup_customer_invoices", {"phone": PHONE}),
            ("ping_down", {}),
            ("ping_down", {}),
            ("ping_down", {}),  # the breaker is open by now
        ]
        for name, args in calls:
            status, _ = await s.post(
                f"/tools/{name}", {"arguments": args, "call": {"id": "c-1"}}, **bearer()
            )
            assert status == 200
        async with Browser(chromium, tmp_path / "profile") as browser:
            # As an operator does: the browser asks for Basic credentials; the token is the
            # password, and the page's own requests carry it from then on.
            page = await browser.open(s.url + "/dashboard", user="ops", password=TOKEN)
            first = await page.wait_for("document.body.dataset.loaded || ''")
            tools = await page.text("#tools")
            endpoints = await page.text("#endpoints")
            integrations = await page.text("#breakers") + await page.text("#limits")
            recent = await page.text("#recent")
            body = await page.text("body")
            # Live: another call shows up at the next refresh, without reloading the page.
            await s.post("/tools/get_customer", {"arguments": {"customer_id": "cus_nobody"}},
                         **bearer())  # fmt: skip
            again = "document.querySelector('#tools').innerText.includes('not_found ×2')"
            await page.wait_for(f"document.body.dataset.loaded > {first!r} && {again}")
            shot = await page.screenshot(width=1280, height=1500)
    rows = {line.split("\t")[0]: line.split("\t") for line in tools.splitlines()}
    assert rows["get_customer"][1] == "3"  # calls
    assert "not_found ×1" in rows["get_customer"][-1]
    assert rows["lookup_customer_invoices"][1] == "1"
    assert rows["ping_down"][1] == "3"
    assert "upstream_unavailable ×2" in rows["ping_down"][-1]
    assert "circuit_open ×1" in rows["ping_down"][-1]
    assert rows["create_payment"][1] == "0"
    assert "GET /customers/{customer_id}" in endpoints and "GET /customers/search" in endpoints
    assert "http_404" in endpoints and "network_error" in endpoints
    assert "open" in integrations and "40" in integrations  # down's breaker; billing's limit
    assert "circuit_open" in recent and "not_found" in recent
    assert "none recorded" in body  # deprecations and unmatched webhooks: none yet
    assert PHONE not in body and "cus_8F2kLq" not in body
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard.png").write_bytes(shot)
