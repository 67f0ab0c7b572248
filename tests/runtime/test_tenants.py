"""Tenants in the runtime: unknown ones are refused before any request, or share the defaults."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from patchbay import CallContext, ToolRuntime
from patchbay.spec import Config, load_config_text

DEFAULT_KEY = "key-default-1a"
ACME_KEY = "key-acme-2b"

CONFIG = """
version: 1
integrations:
  api:
    base_url: ${API_URL}
    auth: {type: api_key, header: X-API-Key, secret: env:PB_API_KEY}
    tenants:
      acme: {secret: env:PB_ACME_KEY}
tools:
  get_item:
    integration: api
    description: Read an item.
    parameters:
      item_id: {type: string}
    request: {method: GET, path: "/items/{item_id}"}
  pay:
    integration: api
    description: Pay later, in the background.
    parameters:
      item_id: {type: string}
    request: {method: POST, path: "/payments", body: {item_id: "{args.item_id}"}}
    idempotency: {key: "pay_{call.id}_{args.item_id}"}
    mode: background
"""


class Upstream:
    """An API on loopback that counts what reaches it: requests by key, token requests."""

    def __init__(self) -> None:
        self.keys: Counter[str] = Counter()
        self.tokens = 0
        self.url = ""

    async def item(self, request: web.Request) -> web.Response:
        self.keys[request.headers.get("X-API-Key") or request.headers.get("Authorization", "")] += 1
        return web.json_response({"id": request.match_info["item_id"]})

    async def payment(self, request: web.Request) -> web.Response:
        self.keys[request.headers.get("X-API-Key", "")] += 1
        return web.json_response({"status": "completed"}, status=201)

    async def token(self, request: web.Request) -> web.Response:
        self.tokens += 1
        return web.json_response(
            {"access_token": f"at-{self.tokens}", "token_type": "bearer", "expires_in": 3600}
        )


@pytest.fixture
async def upstream(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Upstream]:
    monkeypatch.setenv("PB_API_KEY", DEFAULT_KEY)
    monkeypatch.setenv("PB_ACME_KEY", ACME_KEY)
    api = Upstream()
    app = web.Application()
    app.router.add_get("/items/{item_id}", api.item)
    app.router.add_post("/payments", api.payment)
    app.router.add_post("/token", api.token)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    api.url = f"http://127.0.0.1:{port}"
    try:
        yield api
    finally:
        await runner.cleanup()


def config(api: Upstream, text: str = CONFIG, **replace: str) -> Config:
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    return load_config_text(text, base_dir=Path(__file__).parent, env={"API_URL": api.url})


async def test_an_unknown_tenant_is_refused_with_a_clear_error_and_no_request(
    upstream: Upstream,
) -> None:
    async with ToolRuntime(config(upstream), sinks=[]) as rt:
        refused = await rt.call_tool("get_item", {"item_id": "i1"}, CallContext("c1", "mallory"))
        queued = await rt.call_tool("pay", {"item_id": "i1"}, CallContext("c2", "mallory"))
        acme = await rt.call_tool("get_item", {"item_id": "i1"}, CallContext("c3", "acme"))
        nobody = await rt.call_tool("get_item", {"item_id": "i1"}, CallContext("c4"))
        pending = await rt.pending_background()
    for result in (refused, queued):
        assert not result.ok and result.error is not None
        assert result.error.code == "unauthorized" and not result.error.retryable
        assert "tenant is not set up to use api" in result.error.message
        assert "mallory" not in result.llm_text()
    assert pending == [], "a refused background write is not queued either"
    assert acme.ok and nobody.ok
    # The made-up tenant sent nothing, not even with the integration's own key.
    assert upstream.keys == Counter({ACME_KEY: 1, DEFAULT_KEY: 1})


async def test_made_up_tenants_share_the_integrations_daily_quota(upstream: Upstream) -> None:
    cfg = config(
        upstream,
        **{"      acme: {secret: env:PB_ACME_KEY}\n": "      acme: {secret: env:PB_ACME_KEY}\n"
           "    unknown_tenants: default\n    quota: {per_day: 3}\n"},
    )  # fmt: skip
    async with ToolRuntime(cfg, sinks=[]) as rt:
        results = [
            await rt.call_tool("get_item", {"item_id": f"i{n}"}, CallContext(f"c{n}", f"t-{n}"))
            for n in range(5)
        ]
    assert [r.ok for r in results] == [True, True, True, False, False]
    assert results[3].error is not None and results[3].error.code == "quota_exceeded"
    # Let in by `default`, they run with the integration's own credentials.
    assert upstream.keys == Counter({DEFAULT_KEY: 3})


OAUTH = {
    "    auth: {type: api_key, header: X-API-Key, secret: env:PB_API_KEY}\n": (
        "    auth: {type: oauth2, token_url: '${API_URL}/token', client_id: pb, "
        "secret: env:PB_API_KEY}\n"
    ),
    "      acme: {secret: env:PB_ACME_KEY}\n": "      acme: {}\n",
    '    request: {method: GET, path: "/items/{item_id}"}\n': (
        '    request: {method: GET, path: "/items/{item_id}"}\n    cache: {ttl_s: 600}\n'
    ),
}


@pytest.mark.parametrize("policy", ["refuse", "default"])
async def test_thousands_of_made_up_tenants_build_no_state_of_their_own(
    upstream: Upstream, policy: str
) -> None:
    text = CONFIG
    for old, new in OAUTH.items():
        assert old in text
        text = text.replace(old, new)
    text = text.replace("    tenants:\n", f"    unknown_tenants: {policy}\n    tenants:\n")
    async with ToolRuntime(config(upstream, text), sinks=[]) as rt:
        results = [
            await rt.call_tool("get_item", {"item_id": "i1"}, CallContext(f"c{n}", f"made-up-{n}"))
            for n in range(3000)
        ]
    if policy == "refuse":
        assert not any(r.ok for r in results)
        assert (upstream.tokens, sum(upstream.keys.values())) == (0, 0)
    else:
        # One set of credentials (one token) and one cache for all of them: one request.
        assert all(r.ok for r in results)
        assert (upstream.tokens, sum(upstream.keys.values())) == (1, 1)
