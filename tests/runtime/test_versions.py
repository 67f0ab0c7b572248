"""API versions: per-tenant pins, canaries sticky per call, Deprecation and Sunset answers."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from patchbay import CallContext, ToolRuntime
from patchbay._errors import ConfigError
from patchbay.http._deprecation import read_deprecation
from patchbay.http._types import Request, Response
from patchbay.observe import MemorySink, PrometheusSink
from patchbay.observe._events import Emitter
from patchbay.policies._base import Exchange
from patchbay.policies._deprecation import DeprecationWatch
from patchbay.runtime._handler import HandlerContext
from patchbay.runtime._versions import canary_share
from patchbay.spec import Config, load_config_text
from patchbay.spec._model import Integration, RequestSpec, Tool

CONFIG = """
version: 1
integrations:
  api:
    base_url: ${API_URL}
    version: {header: X-API-Version, value: "2024-06-01"}
    unknown_tenants: default
    tenants:
      acme: {version: {header: X-API-Version, value: "2023-01-01"}}
      globex:
        version: {header: X-API-Version, value: "2024-06-01",
                  canary: {value: "2025-01-01", percent: 10}}
  legacy:
    base_url: ${API_URL}
    version: {path_prefix: /v1, canary: {value: /v2, percent: 50}}
tools:
  get_item:
    integration: api
    description: Read an item.
    parameters:
      item_id: {type: string}
    request: {method: GET, path: "/items/{item_id}"}
  old_item:
    integration: api
    description: Read an item from a deprecated endpoint.
    parameters:
      item_id: {type: string}
    request: {method: GET, path: "/old/{item_id}"}
  item_by_handler:
    integration: api
    description: Read an item through a Python handler.
    parameters:
      item_id: {type: string}
    handler: test_versions:item_handler
    write: false
  legacy_item:
    integration: legacy
    description: Read an item by path version.
    parameters:
      item_id: {type: string}
    request: {method: GET, path: "/items/{item_id}"}
"""

DEPRECATED = {
    "Deprecation": "@1688169599",
    "Sunset": "Wed, 11 Nov 2026 23:59:59 GMT",
    "Link": '<https://api.example.test/deprecations/old?token=x>; rel="deprecation"',
}


class Upstream:
    """An API on loopback that records the version each request asked for."""

    def __init__(self) -> None:
        self.versions: list[str] = []
        self.paths: list[str] = []
        self.url = ""

    async def item(self, request: web.Request) -> web.Response:
        self.versions.append(request.headers.get("X-API-Version", ""))
        self.paths.append(request.path)
        return web.json_response({"id": request.match_info["item_id"]})

    async def old(self, request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["item_id"]}, headers=DEPRECATED)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    api = Upstream()
    app = web.Application()
    app.router.add_get("/items/{item_id}", api.item)
    app.router.add_get("/v1/items/{item_id}", api.item)
    app.router.add_get("/v2/items/{item_id}", api.item)
    app.router.add_get("/old/{item_id}", api.old)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    api.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield api
    finally:
        await runner.cleanup()


async def item_handler(ctx: HandlerContext, item_id: str) -> Any:
    """A handler's own request: it must carry the version chosen for its call."""
    return await ctx.client.get(f"/items/{item_id}")


def config(api: Upstream) -> Config:
    return load_config_text(CONFIG, base_dir=Path(__file__).parent, env={"API_URL": api.url})


async def test_a_tenant_sends_its_own_version(upstream: Upstream) -> None:
    async with ToolRuntime(config(upstream), sinks=[]) as rt:
        await rt.call_tool("get_item", {"item_id": "i1"}, CallContext("c1", "acme"))
        await rt.call_tool("get_item", {"item_id": "i1"}, CallContext("c2"))
        await rt.call_tool("get_item", {"item_id": "i1"}, CallContext("c3", "someone"))
    assert upstream.versions == ["2023-01-01", "2024-06-01", "2024-06-01"]


def test_the_canary_share_is_stable_and_close_to_the_percent() -> None:
    shares = [canary_share("globex", f"call-{i}") for i in range(20000)]
    assert shares == [canary_share("globex", f"call-{i}") for i in range(20000)]
    below = sum(s < 10 for s in shares) / len(shares)
    assert 0.09 < below < 0.11
    assert all(0 <= s < 100 for s in shares)
    # another tenant's call of the same id is placed on its own
    assert [canary_share("acme", f"call-{i}") for i in range(50)] != shares[:50]


async def test_a_canary_is_sticky_per_call_and_labelled_by_version(upstream: Upstream) -> None:
    sink, metrics = MemorySink(), PrometheusSink()
    calls = 300
    async with ToolRuntime(config(upstream), sinks=[sink, metrics]) as rt:
        for i in range(calls):
            ctx = CallContext(f"call-{i}", "globex")
            for _ in range(3):
                await rt.call_tool("get_item", {"item_id": "i1"}, ctx)
    per_call = [upstream.versions[i * 3 : i * 3 + 3] for i in range(calls)]
    assert all(len(set(three)) == 1 for three in per_call), "one phone call, one version"
    chosen = Counter(three[0] for three in per_call)
    assert set(chosen) == {"2024-06-01", "2025-01-01"}
    expected = sum(canary_share("globex", f"call-{i}") < 10 for i in range(calls))
    assert chosen["2025-01-01"] == expected
    assert 0.04 < expected / calls < 0.18
    versions = {e.extra.get("version") for e in sink.of_kind("tool_call")}
    assert versions == {"2024-06-01", "2025-01-01"}
    assert {e.extra.get("version") for e in sink.of_kind("attempt")} == versions
    text = metrics.exposition().decode()
    canary = chosen["2025-01-01"] * 3
    assert (
        f'patchbay_version_tool_calls_total{{outcome="ok",tool="get_item",version="2025-01-01"}}'
        f" {float(canary)}" in text
    )
    assert 'patchbay_version_request_seconds_count{integration="api",version="2024-06-01"}' in text


async def test_a_path_prefix_canary_moves_the_path(upstream: Upstream) -> None:
    async with ToolRuntime(config(upstream), sinks=[]) as rt:
        for i in range(40):
            await rt.call_tool("legacy_item", {"item_id": "i1"}, CallContext(f"c{i}"))
    prefixes = Counter(path.split("/")[1] for path in upstream.paths)
    expected = sum(canary_share(None, f"c{i}") < 50 for i in range(40))
    assert prefixes == Counter({"v2": expected, "v1": 40 - expected})


async def test_deprecation_headers_are_one_event_and_metric_per_endpoint(
    upstream: Upstream,
) -> None:
    sink, metrics = MemorySink(), PrometheusSink()
    async with ToolRuntime(config(upstream), sinks=[sink, metrics]) as rt:
        for i in range(5):
            result = await rt.call_tool("old_item", {"item_id": f"i{i}"}, CallContext(f"c{i}"))
            assert result.ok
        await rt.call_tool("get_item", {"item_id": "i1"}, CallContext("c9"))
    (event,) = sink.of_kind("deprecation")
    assert event.integration == "api" and event.path == "/old/{item_id}"
    assert event.extra["endpoint"] == "GET /old/{item_id}"
    assert event.extra["since"] == "2023-06-30T23:59:59Z"
    assert event.extra["sunset"] == "2026-11-11T23:59:59Z"
    assert event.extra["link"] == "https://api.example.test/deprecations/old"
    assert "i0" not in json.dumps(event.extra), "the endpoint is the template, never the path"
    text = metrics.exposition().decode()
    assert 'patchbay_deprecations_total{endpoint="GET /old/{item_id}",integration="api"} 1.0' in (
        text
    )


def _exchange(sink: MemorySink) -> Exchange:
    tool = Tool(name="t", integration="api", description="d", request=RequestSpec(path="/old/{id}"))
    integration = Integration(name="api", base_url="http://127.0.0.1:9")
    return Exchange(
        tool=tool,
        integration=integration,
        call=CallContext("c1"),
        deadline=0.0,
        emitter=Emitter([sink]),
    )


def test_a_deprecated_endpoint_is_reported_again_the_next_day() -> None:
    now = [1_800_000_000.0]
    watch = DeprecationWatch(clock=lambda: now[0])
    sink = MemorySink()
    exchange = _exchange(sink)
    request = Request("GET", "http://127.0.0.1:9/old/1", "/old/{id}", "api", "t")
    other = Request("POST", "http://127.0.0.1:9/old/1", "/old/{id}", "api", "t")
    answer = Response(200, {"deprecation": "true"}, b"{}")
    for _ in range(3):
        watch.check(request, answer, exchange)
    watch.check(other, answer, exchange)  # another method: another endpoint
    watch.check(request, Response(200, {"content-type": "application/json"}, b"{}"), exchange)
    now[0] += 86400
    watch.check(request, answer, exchange)
    assert [e.extra["endpoint"] for e in sink.of_kind("deprecation")] == [
        "GET /old/{id}",
        "POST /old/{id}",
        "GET /old/{id}",
    ]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"deprecation": "@1688169599"}, (True, "2023-06-30T23:59:59Z", None)),
        ({"Deprecation": "true"}, (True, None, None)),
        (
            {"deprecation": "Sun, 30 Jun 2024 23:59:59 GMT"},
            (True, "2024-06-30T23:59:59Z", None),
        ),
        ({"sunset": "Sat, 31 Dec 2033 23:59:59 GMT"}, (False, None, "2033-12-31T23:59:59Z")),
    ],
)
def test_deprecation_header_forms(
    headers: dict[str, str], expected: tuple[bool, str | None, str | None]
) -> None:
    notice = read_deprecation(headers)
    assert notice is not None
    assert (notice.deprecated, notice.since, notice.sunset) == expected


@pytest.mark.parametrize(
    "headers",
    [{}, {"content-type": "application/json"}, {"deprecation": "soon"}, {"sunset": "never"}],
)
def test_no_notice_without_a_readable_header(headers: dict[str, str]) -> None:
    assert read_deprecation(headers) is None


def test_version_mistakes_are_config_errors_with_their_location() -> None:
    text = """
version: 1
integrations:
  api:
    base_url: http://127.0.0.1:9
    version: {header: X-API-Version, value: a, canary: {value: "b\\r\\nX-Injected: 1", percent: 5}}
    tenants:
      acme: {version: {header: "Bad Header", value: z}}
tools: {}
"""
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, base_dir=Path(__file__).parent)
    message = str(caught.value)
    assert "integrations.api.version.canary.value: a header value may not contain" in message
    assert "integrations.api.tenants.acme.version: 'Bad Header' is not a valid header" in message
    same = text.replace('"b\\r\\nX-Injected: 1"', "a")
    assert same != text
    with pytest.raises(ConfigError) as caught:
        load_config_text(same, base_dir=Path(__file__).parent)
    assert "integrations.api.version: canary.value is the version already pinned" in str(
        caught.value
    )


async def test_a_handlers_requests_carry_the_calls_canary_version(upstream: Upstream) -> None:
    async with ToolRuntime(config(upstream), sinks=[]) as rt:
        for i in range(60):
            ctx = CallContext(f"h-{i}", "globex")
            await rt.call_tool("item_by_handler", {"item_id": "i1"}, ctx)
            await rt.call_tool("get_item", {"item_id": "i1"}, ctx)
    pairs = [upstream.versions[i : i + 2] for i in range(0, 120, 2)]
    assert all(a == b for a, b in pairs), "the handler and the declared request agree per call"
    expected = ["2025-01-01" if canary_share("globex", f"h-{i}") < 10 else "2024-06-01"
                for i in range(60)]  # fmt: skip
    assert [a for a, _ in pairs] == expected
    assert "2025-01-01" in expected
