"""Call ids belong to their tenant: the same id under another tenant is another call.

Against a loopback API that records every request with the key it came with: what one tenant's
call learned never reaches a request of another tenant's call of the same id.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from patchbay import CallContext, ToolRuntime
from patchbay.spec import Config, load_config_text
from patchbay.state import MemoryStore

KEYS = {"PB_API_KEY": "key-default", "PB_ACME_KEY": "key-acme", "PB_GLOBEX_KEY": "key-globex"}

CONFIG = """
version: 1
integrations:
  api:
    base_url: ${API_URL}
    retry: {attempts: 1}
    auth: {type: api_key, header: X-API-Key, secret: env:PB_API_KEY}
    tenants:
      acme: {secret: env:PB_ACME_KEY}
      globex: {secret: env:PB_GLOBEX_KEY}
    unknown_tenants: default
tools:
  remember:
    integration: api
    description: Note the customer this call is about.
    parameters: {customer_id: {type: string}}
    handler: call_tenant_tools:remember
  pay:
    integration: api
    description: Pay for the customer this call is about.
    parameters: {amount: {type: integer}}
    request:
      method: POST
      path: /payments
      body: {customer_id: "{call.state.customer_id}", amount: "{args.amount}"}
    idempotency: {key: "pay_{call.id}_{args.amount}"}
  pay_later:
    integration: api
    description: Pay in the background.
    parameters: {amount: {type: integer}}
    request: {method: POST, path: /payments, body: {amount: "{args.amount}"}}
    idempotency: {key: "later_{call.id}_{args.amount}"}
    mode: background
  lookup:
    integration: api
    description: Look the caller up.
    parameters: {phone: {type: string}}
    request: {method: GET, path: "/customers/{phone}"}
    prefetch: {args: {phone: "{call.caller}"}}
  count:
    integration: api
    description: Once per call.
    request: {method: GET, path: /count}
    quota: {per_call: 1}
"""

HANDLERS = """
async def remember(ctx, customer_id):
    ctx.state["customer_id"] = customer_id
    return {"remembered": customer_id}
"""


@dataclass
class Api:
    """What reached the API: (X-API-Key, method, path, JSON body) per request."""

    seen: list[tuple[str, str, str, Any]] = field(default_factory=list)

    async def record(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read() or b"null")
        self.seen.append((request.headers["X-API-Key"], request.method, request.path, body))
        return web.json_response({"ok": True, "path": request.path}, status=200)

    def payments(self) -> list[tuple[str, Any]]:
        return [(key, body) for key, method, _, body in self.seen if method == "POST"]


@pytest.fixture
async def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Api, Config]]:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)  # where the `env:` secret references read them
    recorder = Api()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    (tmp_path / "call_tenant_tools.py").write_text(HANDLERS)
    env = {"API_URL": str(server.make_url("")).rstrip("/")}
    try:
        yield recorder, load_config_text(CONFIG, base_dir=tmp_path, env=env)
    finally:
        await server.close()


def acme(call_id: str = "c-1", **kw: Any) -> CallContext:
    return CallContext(call_id, tenant="acme", **kw)


def globex(call_id: str = "c-1", **kw: Any) -> CallContext:
    return CallContext(call_id, tenant="globex", **kw)


async def test_another_tenant_naming_a_live_call_id_neither_sees_nor_takes_it(
    api: tuple[Api, Config],
) -> None:
    seen, config = api
    async with ToolRuntime(config, sinks=[]) as rt:
        assert (await rt.call_tool("remember", {"customer_id": "cus_A"}, acme())).ok
        stolen = await rt.call_tool("pay", {"amount": 100}, globex())
        assert not stolen.ok and stolen.error is not None
        assert stolen.error.code == "invalid_arguments", stolen.error
        assert seen.payments() == [], "nothing was paid with acme's customer"
        # acme's call is still acme's, with its state
        assert rt.call_context(acme()).tenant == "acme"
        assert rt.call_context(globex()).state == {}
        own = await rt.call_tool("pay", {"amount": 100}, acme())
    assert own.ok, own
    assert seen.payments() == [("key-acme", {"customer_id": "cus_A", "amount": 100})]


async def test_two_tenants_with_the_same_call_id_keep_separate_state(
    api: tuple[Api, Config],
) -> None:
    seen, config = api
    async with ToolRuntime(config, sinks=[]) as rt:
        await rt.call_tool("remember", {"customer_id": "cus_A"}, acme())
        await rt.call_tool("remember", {"customer_id": "cus_B"}, globex())
        # a call without a tenant is one more call of its own
        await rt.call_tool("remember", {"customer_id": "cus_N"}, "c-1")
        for call in (acme(), globex(), CallContext("c-1")):
            assert (await rt.call_tool("pay", {"amount": 7}, call)).ok
    assert sorted(seen.payments()) == [
        ("key-acme", {"customer_id": "cus_A", "amount": 7}),
        ("key-default", {"customer_id": "cus_N", "amount": 7}),
        ("key-globex", {"customer_id": "cus_B", "amount": 7}),
    ]


async def test_state_is_persisted_per_tenant_and_read_back_by_another_replica(
    api: tuple[Api, Config],
) -> None:
    seen, config = api
    store = MemoryStore()
    # Tenant names are free text under `unknown_tenants: default`: ':' must not blur them.
    odd, plain = CallContext("c", tenant="shop:x"), CallContext("x:c", tenant="shop")
    async with (
        ToolRuntime(config, sinks=[], store=store) as one,
        ToolRuntime(config, sinks=[], store=store) as two,
    ):
        await one.call_tool("remember", {"customer_id": "cus_A"}, acme())
        await one.call_tool("remember", {"customer_id": "cus_N"}, "c-1")
        await one.call_tool("remember", {"customer_id": "cus_odd"}, odd)
        await one.call_tool("remember", {"customer_id": "cus_plain"}, plain)
        # A call without a tenant keeps the key it always had: state stored before stays readable.
        assert json.loads(await store.get("call:c-1") or b"{}") == {"customer_id": "cus_N"}
        assert not (await two.call_tool("pay", {"amount": 1}, globex())).ok
        assert (await two.call_tool("pay", {"amount": 1}, acme())).ok
        assert (await two.call_tool("pay", {"amount": 2}, CallContext(odd.id, odd.tenant))).ok
        assert (await two.call_tool("pay", {"amount": 3}, CallContext(plain.id, "shop"))).ok
    assert [body["customer_id"] for _, body in seen.payments()] == ["cus_A", "cus_odd", "cus_plain"]


async def test_ending_a_call_ends_only_that_tenants_call(api: tuple[Api, Config]) -> None:
    seen, config = api
    store = MemoryStore()
    async with ToolRuntime(config, sinks=[], store=store) as rt:
        await rt.call_tool("remember", {"customer_id": "cus_A"}, acme())
        await rt.end_call("c-1", "globex")
        await rt.end_call("c-1")  # the call of that id without a tenant
        assert (await rt.call_tool("pay", {"amount": 1}, acme())).ok
        with pytest.raises(ValueError):
            await rt.end_call(acme(), "globex")  # a context and another tenant: which call?
        assert await store.get("call@acme:c-1") is not None
        await rt.end_call(acme())  # a context names its own tenant
        assert rt.call_context(acme()).state == {}
        assert await store.get("call@acme:c-1") is None
        assert not (await rt.call_tool("pay", {"amount": 2}, acme())).ok
    assert len(seen.payments()) == 1


async def test_another_tenant_does_not_take_a_calls_prefetched_answer(
    api: tuple[Api, Config],
) -> None:
    seen, config = api
    async with ToolRuntime(config, sinks=[]) as rt:
        await rt.start_call(acme(caller="5551234"))
        theirs = await rt.call_tool("lookup", {"phone": "5551234"}, globex(caller="5551234"))
        mine = await rt.call_tool("lookup", {"phone": "5551234"}, acme())
    assert theirs.ok and not theirs.meta.get("prefetched"), theirs.meta
    assert mine.ok and mine.meta.get("prefetched"), mine.meta
    lookups = sorted(key for key, method, _, _ in seen.seen if method == "GET")
    assert lookups == ["key-acme", "key-globex"], "each tenant's lookup used its own key"


async def test_background_outcomes_are_read_with_the_calls_tenant(
    api: tuple[Api, Config],
) -> None:
    _, config = api
    async with ToolRuntime(config, sinks=[]) as rt:
        accepted = await rt.call_tool("pay_later", {"amount": 5}, acme())
        assert accepted.ok and accepted.result is not None
        reference = accepted.result["reference"]
        assert await rt.drain(10.0)
        assert (await rt.background_outcome("c-1", reference, "acme") or {})["ok"] is True
        assert (await rt.background_outcome(acme(), reference) or {})["ok"] is True
        assert await rt.background_outcome("c-1", reference) is None
        assert await rt.background_outcome("c-1", reference, "globex") is None


async def test_per_call_quota_counts_each_tenants_call_apart(api: tuple[Api, Config]) -> None:
    _, config = api
    async with ToolRuntime(config, sinks=[]) as rt:
        # Unknown tenants share the integration's quota scope: the call's tenant still counts.
        first = await rt.call_tool("count", {}, CallContext("c-1", tenant="walkin"))
        other = await rt.call_tool("count", {}, CallContext("c-1"))
        again = await rt.call_tool("count", {}, CallContext("c-1", tenant="walkin"))
    assert first.ok and other.ok, (first, other)
    assert not again.ok and again.error is not None and again.error.code == "quota_exceeded"
