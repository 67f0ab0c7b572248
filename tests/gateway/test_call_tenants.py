"""Call ids at the gateway belong to the credential's tenant: naming another tenant's live call id
reaches a call of one's own, never the other tenant's state, tenant or end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from patchbay.spec import Config, load_config_text

from .gateway_support import TOKEN, VAPI_SECRET, Stack, StackFactory, bearer

ACME_TOKEN = "tok-acme-5e1f"
ACME_VAPI = "vapi-acme-7c2b"
GLOBEX_TOKEN = "tok-globex-0d4a"
GLOBEX_VAPI = "vapi-globex-93e8"

CONFIG = """
version: 1
gateway:
  auth:
    bearer: env:PB_TEST_TOKEN
    vapi_secret: env:PB_TEST_VAPI
    tenants:
      acme: {bearer: env:PB_CT_ACME_TOKEN, vapi_secret: env:PB_CT_ACME_VAPI}
      globex: {bearer: env:PB_CT_GLOBEX_TOKEN, vapi_secret: env:PB_CT_GLOBEX_VAPI}
integrations:
  local: {base_url: "http://127.0.0.1:9", tenants: {acme: {}, globex: {}}}
tools:
  remember:
    integration: local
    description: Note the customer this call is about.
    parameters: {customer_id: {type: string}}
    handler: call_tenant_gateway_tools:remember
  recall:
    integration: local
    description: What this call knows.
    handler: call_tenant_gateway_tools:recall
"""

HANDLERS = """
async def remember(ctx, customer_id):
    ctx.state["customer_id"] = customer_id
    return {"tenant": ctx.call.tenant}


async def recall(ctx):
    return {"tenant": ctx.call.tenant, "state": dict(ctx.state)}
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("PB_CT_ACME_TOKEN", ACME_TOKEN)
    monkeypatch.setenv("PB_CT_ACME_VAPI", ACME_VAPI)
    monkeypatch.setenv("PB_CT_GLOBEX_TOKEN", GLOBEX_TOKEN)
    monkeypatch.setenv("PB_CT_GLOBEX_VAPI", GLOBEX_VAPI)
    (tmp_path / "call_tenant_gateway_tools.py").write_text(HANDLERS)
    return load_config_text(CONFIG, base_dir=tmp_path)


async def tool(s: Stack, name: str, token: str, call: dict[str, Any], **args: Any) -> Any:
    status, data = await s.post(
        f"/tools/{name}", {"arguments": args, "call": call}, **bearer(token)
    )
    assert status == 200 and data["ok"], data
    return data["result"]


async def recall(s: Stack, token: str, call_id: str = "c-1", **call: Any) -> Any:
    return await tool(s, "recall", token, {"id": call_id, **call})


async def test_another_tenant_naming_a_live_call_id_neither_sees_nor_changes_it(
    stack: StackFactory, config: Config
) -> None:
    async with stack(config) as s:
        await tool(s, "remember", ACME_TOKEN, {"id": "c-1"}, customer_id="cus_A")
        theirs = await recall(s, GLOBEX_TOKEN)
        # starting or ending "c-1" with globex's credential is about globex's own call
        start = await s.post(
            "/calls/c-1/start", {"state": {"customer_id": "cus_G"}}, **bearer(GLOBEX_TOKEN)
        )
        end = await s.post("/calls/c-1/end", {}, **bearer(GLOBEX_TOKEN))
        refused = await s.post("/calls/c-1/end", {"tenant": "acme"}, **bearer(GLOBEX_TOKEN))
        mine = await recall(s, ACME_TOKEN)
    assert theirs == {"tenant": "globex", "state": {}}
    assert start[0] == 200 and end[0] == 200
    assert refused[0] == 403 and refused[1]["error"]["code"] == "forbidden"
    assert mine == {"tenant": "acme", "state": {"customer_id": "cus_A"}}


async def test_two_tenants_using_the_same_call_id_keep_separate_state(
    stack: StackFactory, config: Config
) -> None:
    async with stack(config) as s:
        await tool(s, "remember", ACME_TOKEN, {"id": "c-1"}, customer_id="cus_A")
        await tool(s, "remember", GLOBEX_TOKEN, {"id": "c-1"}, customer_id="cus_G")
        await tool(s, "remember", TOKEN, {"id": "c-1"}, customer_id="cus_N")  # no tenant
        acme, globex, none = [await recall(s, t) for t in (ACME_TOKEN, GLOBEX_TOKEN, TOKEN)]
        # the operator naming a tenant reaches that tenant's call
        as_acme = await recall(s, TOKEN, tenant="acme")
    assert acme == {"tenant": "acme", "state": {"customer_id": "cus_A"}}
    assert globex == {"tenant": "globex", "state": {"customer_id": "cus_G"}}
    assert none == {"tenant": None, "state": {"customer_id": "cus_N"}}
    assert as_acme == acme


async def test_the_operator_ends_a_tenants_call_by_naming_the_tenant(
    stack: StackFactory, config: Config
) -> None:
    async with stack(config) as s:
        for call_id in ("c-1", "c-2"):
            await tool(s, "remember", ACME_TOKEN, {"id": call_id}, customer_id="cus_A")
        await s.post("/calls/c-1/end", {}, **bearer(TOKEN))  # the call without a tenant
        kept = await recall(s, ACME_TOKEN)
        by_body = await s.post("/calls/c-1/end", {"tenant": "acme"}, **bearer(TOKEN))
        by_query = await s.post("/calls/c-2/end?tenant=acme", {}, **bearer(TOKEN))
        ended = [await recall(s, ACME_TOKEN, call_id) for call_id in ("c-1", "c-2")]
    assert kept["state"] == {"customer_id": "cus_A"}
    assert by_body == (200, {"call_id": "c-1", "ended": True}) and by_query[0] == 200
    assert [r["state"] for r in ended] == [{}, {}]


def vapi(kind: str, call_id: str, **message: Any) -> dict[str, Any]:
    return {"message": {"type": kind, "call": {"id": call_id}, **message}}


async def test_vapi_end_of_call_ends_only_the_senders_call(
    stack: StackFactory, config: Config
) -> None:
    remember = vapi(
        "tool-calls",
        "v-1",
        toolCallList=[{"id": "t1", "name": "remember", "arguments": {"customer_id": "cus_A"}}],
    )
    async with stack(config) as s:
        status, _ = await s.post("/vapi", remember, **{"X-Vapi-Secret": ACME_VAPI})
        assert status == 200
        await s.post("/vapi", vapi("end-of-call-report", "v-1"), **{"X-Vapi-Secret": GLOBEX_VAPI})
        await s.post(
            "/vapi", vapi("status-update", "v-1", status="ended"), **{"X-Vapi-Secret": VAPI_SECRET}
        )
        kept = await recall(s, ACME_TOKEN, "v-1")
        await s.post("/vapi", vapi("end-of-call-report", "v-1"), **{"X-Vapi-Secret": ACME_VAPI})
        ended = await recall(s, ACME_TOKEN, "v-1")
    assert kept["state"] == {"customer_id": "cus_A"}
    assert ended["state"] == {}
