"""Tenants at the gateway: a tenant's credential decides the tenant, on every surface."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from patchbay import ConfigErrors, SecretError
from patchbay.gateway import Credentials, create_app, sign_retell
from patchbay.http import SecretResolver
from patchbay.integrations._mcp import META_TENANT, mcp_asgi
from patchbay.runtime import ToolRuntime
from patchbay.spec import CallContext, GatewayAuth, GatewayTenant, load_config_text

from .gateway_support import (
    HERE,
    RETELL_KEY,
    TOKEN,
    VAPI_SECRET,
    Stack,
    StackFactory,
    bearer,
    running,
    small_config,
)
from .surfaces import elevenlabs_body, retell_body, vapi_message

ACME_TOKEN = "tok-acme-2b7e"
ACME_VAPI = "vapi-acme-90c1"
ACME_RETELL = "key_retell_acme_44f0"
ACME_ELEVENLABS = "el-acme-7d2a"
GLOBEX_TOKEN = "tok-globex-c3d9"

TENANTS = {
    "acme": GatewayTenant(
        bearer="env:PB_ACME_TOKEN",
        vapi_secret="env:PB_ACME_VAPI",
        retell_api_key="env:PB_ACME_RETELL",
        elevenlabs_secret="env:PB_ACME_ELEVENLABS",
    ),
    "globex": GatewayTenant(bearer="env:PB_GLOBEX_TOKEN"),
}


@pytest.fixture(autouse=True)
def tenant_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each tenant's gateway credentials, where TENANTS references them."""
    monkeypatch.setenv("PB_ACME_TOKEN", ACME_TOKEN)
    monkeypatch.setenv("PB_ACME_VAPI", ACME_VAPI)
    monkeypatch.setenv("PB_ACME_RETELL", ACME_RETELL)
    monkeypatch.setenv("PB_ACME_ELEVENLABS", ACME_ELEVENLABS)
    monkeypatch.setenv("PB_GLOBEX_TOKEN", GLOBEX_TOKEN)


def tenant_auth(**kw: Any) -> GatewayAuth:
    """The operator's secrets (as in full_auth) and the tenants' own."""
    operator = {
        "bearer": "env:PB_TEST_TOKEN",
        "vapi_secret": "env:PB_TEST_VAPI",
        "retell_api_key": "env:PB_TEST_RETELL",
        "elevenlabs_secret": "env:PB_TEST_ELEVENLABS",
    }
    return GatewayAuth(**{**operator, "tenants": TENANTS, **kw})


def config(**kw: Any) -> Any:
    """The small config (its integration lists acme), with globex and walkin listed too."""
    cfg = small_config(tenant_auth(**kw))
    local = cfg.integrations["local"]
    tenants = {**local.tenants, "globex": local.tenants["acme"], "walkin": local.tenants["acme"]}
    integrations = {"local": local.model_copy(update={"tenants": tenants})}
    return cfg.model_copy(update={"integrations": integrations})


async def echo(s: Stack, call: dict[str, Any] | None, query: str = "", **headers: str) -> Any:
    body: dict[str, Any] = {"arguments": {"text": "hi"}}
    if call is not None:
        body["call"] = call
    return await s.post(f"/tools/echo{query}", body, **headers)


async def test_a_tenants_credential_runs_as_its_tenant(stack: StackFactory) -> None:
    async with stack(config()) as s:
        status, named_none = await echo(s, {"id": "c-1"}, **bearer(ACME_TOKEN))
        _, no_call = await echo(s, None, **bearer(ACME_TOKEN))
        _, named_self = await echo(
            s, {"id": "c-2", "tenant": "acme"}, "?tenant=acme", **bearer(ACME_TOKEN)
        )
    assert status == 200 and named_none["ok"], named_none
    assert named_none["result"]["tenant"] == "acme"
    # A tool call that names no call still runs as the credential's tenant.
    assert no_call["ok"] and no_call["result"]["tenant"] == "acme"
    assert named_self["ok"] and named_self["result"]["tenant"] == "acme"


async def test_a_tenants_credential_naming_another_tenant_is_refused(stack: StackFactory) -> None:
    async with stack(config()) as s:
        in_body = await echo(s, {"id": "c-1", "tenant": "globex"}, **bearer(ACME_TOKEN))
        in_query = await echo(s, {"id": "c-1"}, "?tenant=globex", **bearer(ACME_TOKEN))
        made_up = await echo(s, {"id": "c-1", "tenant": "mallory"}, **bearer(ACME_TOKEN))
        start = await s.post("/calls/c-9/start", {"tenant": "globex"}, **bearer(ACME_TOKEN))
        started = await s.post("/calls/c-8/start", {"caller": "+1"}, **bearer(GLOBEX_TOKEN))
        # started as globex's call c-8 (a call id is unique within its tenant only)
        assert s.runtime.call_context(CallContext("c-8", tenant="globex")).caller == "+1"
        assert s.runtime.call_context("c-8").caller is None
    for status, data in (in_body, in_query, made_up, start):
        assert status == 403, data
        assert data["error"]["code"] == "forbidden"
        assert "belongs to tenant 'acme'" in data["error"]["message"]
    assert started[0] == 200
    assert s.events.of_kind("tool_call") == [], "nothing ran for a refused request"


async def test_the_operator_may_name_any_tenant_and_unknown_ones_are_refused(
    stack: StackFactory,
) -> None:
    async with stack(config()) as s:
        _, globex = await echo(s, {"id": "c-1", "tenant": "globex"}, **bearer(TOKEN))
        _, by_query = await echo(s, {"id": "c-2"}, "?tenant=walkin", **bearer(TOKEN))
        _, none = await echo(s, {"id": "c-3"}, **bearer(TOKEN))
        status, unknown = await echo(s, {"id": "c-4", "tenant": "mallory"}, **bearer(TOKEN))
    assert globex["result"]["tenant"] == "globex"
    assert by_query["result"]["tenant"] == "walkin"
    assert none["ok"] and none["result"]["tenant"] is None
    # The tool's answer, not the request's: a clear error for the LLM, and nothing was run.
    assert status == 200 and unknown["ok"] is False
    assert unknown["error"]["code"] == "unauthorized"
    assert "tenant is not set up to use local" in unknown["error"]["message"]
    assert "mallory" not in json.dumps(unknown)


async def test_vapi_secret_of_a_tenant_binds_the_tenant(stack: StackFactory) -> None:
    message = vapi_message(
        "vapi_api_reference_tool_calls.json", [("tc", "echo", {"text": "x"})], "v-1"
    )
    async with stack(config()) as s:
        status, data = await s.post("/vapi", message, **{"X-Vapi-Secret": ACME_VAPI})
        other = await s.post("/vapi?tenant=globex", message, **{"X-Vapi-Secret": ACME_VAPI})
        operator = await s.post("/vapi?tenant=globex", message, **{"X-Vapi-Secret": VAPI_SECRET})
    assert status == 200
    assert json.loads(data["results"][0]["result"])["result"]["tenant"] == "acme"
    assert other[0] == 403 and other[1]["code"] == "forbidden" and other[1]["results"] == []
    assert json.loads(operator[1]["results"][0]["result"])["result"]["tenant"] == "globex"


async def test_retell_signature_is_checked_with_every_key_and_binds_its_tenant(
    stack: StackFactory,
) -> None:
    raw = retell_body("echo", {"text": "x"}, "r-1")

    def signed(key: str) -> dict[str, str]:
        return {"X-Retell-Signature": sign_retell(raw, key)}

    async with stack(config()) as s:
        acme = await s.post("/retell/echo", raw=raw, **signed(ACME_RETELL))
        acme_other = await s.post("/retell/echo?tenant=globex", raw=raw, **signed(ACME_RETELL))
        operator = await s.post("/retell/echo?tenant=globex", raw=raw, **signed(RETELL_KEY))
        stranger = await s.post("/retell/echo", raw=raw, **signed("key_retell_nobody"))
    assert acme[0] == 200 and acme[1]["result"]["tenant"] == "acme"
    assert acme_other[0] == 403 and acme_other[1]["error"] == "forbidden"
    assert operator[0] == 200 and operator[1]["result"]["tenant"] == "globex"
    assert stranger[0] == 401


async def test_elevenlabs_secret_of_a_tenant_binds_the_tenant(stack: StackFactory) -> None:
    body = elevenlabs_body({"text": "x"}, "conv-1")
    async with stack(config()) as s:
        own = await s.post("/elevenlabs/echo", body, **{"X-Elevenlabs-Secret": ACME_ELEVENLABS})
        other = await s.post(
            "/elevenlabs/echo?tenant=globex", body, **{"X-Elevenlabs-Secret": ACME_ELEVENLABS}
        )
        # without a call the answer still runs as the tenant
        bare = await s.post("/elevenlabs/echo", {"text": "x"}, **bearer(ACME_TOKEN))
    assert own[0] == 200 and own[1]["result"]["tenant"] == "acme"
    assert other[0] == 403 and other[1]["error"] == "forbidden"
    assert bare[1]["result"]["tenant"] == "acme"


async def test_only_the_operator_reads_the_metrics_of_every_tenant(stack: StackFactory) -> None:
    async with stack(config()) as s:
        tenant = await s.get("/metrics", **bearer(ACME_TOKEN))
        operator = await s.get("/metrics", **bearer(TOKEN))
    assert tenant[0] == 403 and json.loads(tenant[1])["error"]["code"] == "forbidden"
    assert operator[0] == 200


async def test_an_open_gateway_keeps_tenants_with_credentials_to_their_credentials(
    stack: StackFactory,
) -> None:
    async with stack(config(open=True)) as s:
        claimed = await echo(s, {"id": "c-1", "tenant": "acme"})
        walkin = await echo(s, {"id": "c-2", "tenant": "walkin"})
        own = await echo(s, {"id": "c-3"}, **bearer(ACME_TOKEN))
    assert claimed[0] == 401 and claimed[1]["error"]["code"] == "unauthorized"
    assert walkin[0] == 200 and walkin[1]["result"]["tenant"] == "walkin"
    assert own[1]["result"]["tenant"] == "acme"


async def test_one_secret_for_two_tenants_stops_the_start() -> None:
    auth = GatewayAuth(
        bearer="env:PB_TEST_TOKEN_SHARED",
        tenants={"acme": GatewayTenant(bearer="env:PB_ACME_TOKEN")},
    )
    resolver = SecretResolver()
    creds = Credentials(auth, resolver)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PB_TEST_TOKEN_SHARED", ACME_TOKEN)
        with pytest.raises(SecretError) as raised:
            await creds.load()
    assert "gateway.auth.tenants.acme.bearer" in str(raised.value)
    assert ACME_TOKEN not in str(raised.value)


def test_a_gateway_tenant_no_integration_serves_is_a_config_error() -> None:
    text = """
version: 1
gateway:
  auth:
    bearer: env:OPS
    tenants: {acme: {bearer: env:ACME}, initech: {bearer: env:INITECH}}
integrations:
  billing: {base_url: "http://127.0.0.1:9", tenants: {acme: {}}}
  weather: {base_url: "http://127.0.0.1:9"}
tools: {}
"""
    with pytest.raises(ConfigErrors) as raised:
        load_config_text(text, base_dir=HERE)
    assert [e.location for e in raised.value.errors] == ["gateway.auth.tenants.initech"]
    assert "unknown_tenants: default" in raised.value.errors[0].message
    served = text.replace("weather: {", "weather: {unknown_tenants: default, ")
    assert load_config_text(served, base_dir=HERE).gateway.auth.tenants.keys() == {
        "acme",
        "initech",
    }


@pytest.fixture
async def mcp_gateway(secrets_env: None) -> AsyncIterator[tuple[ToolRuntime, str]]:
    """The gateway with MCP at /mcp, as `patchbay serve` mounts it."""
    cfg = config()
    async with ToolRuntime(cfg, sinks=[]) as rt:
        http = mcp_asgi(rt, stateless=True)
        app = create_app(rt, cfg, extra_mounts=[http.route()], extra_lifespan=http.lifespan)
        async with running(app) as url:
            yield rt, url + "/mcp"


async def _mcp_echo(url: str, headers: dict[str, str], meta: dict[str, Any] | None = None) -> Any:
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        try:
            result = await session.call_tool("echo", {"text": "m"}, meta=meta)
        except MCPError as exc:
            return exc
        return json.loads(result.content[0].text)  # type: ignore[union-attr]


async def test_mcp_runs_as_the_credentials_tenant(mcp_gateway: tuple[ToolRuntime, str]) -> None:
    _, url = mcp_gateway
    acme = {**bearer(ACME_TOKEN), "X-Call-Id": "m-1"}
    assert (await _mcp_echo(url, acme))["result"]["tenant"] == "acme"
    refused = await _mcp_echo(url, acme, meta={META_TENANT: "globex"})
    assert isinstance(refused, MCPError) and "belongs to tenant 'acme'" in refused.message
    operator = {**bearer(TOKEN), "X-Call-Id": "m-2"}
    named = await _mcp_echo(url, operator, meta={META_TENANT: "globex"})
    assert named["result"]["tenant"] == "globex"
    async with httpx2.AsyncClient() as client:
        by_header = await client.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={**bearer(ACME_TOKEN), "X-Tenant": "globex"},
        )
    assert by_header.status_code == 403
    assert by_header.json()["error"]["code"] == "forbidden"
