"""Nothing a gateway writes for operators carries a secret or the caller's phone or email.

A realistic session runs through `patchbay serve` (configured from YAML alone) against the
example billing API behind a fault proxy, with every sink on: logs at debug with redacted
bodies, JSON lines, the audit trail, Prometheus (/metrics and a metrics file), OTLP traces
into a local receiver and the dashboard's payloads. Calls succeed and fail every way a call
can: upstream 5xx, 4xx answers that echo the caller's details back, refused credentials,
arguments that fail validation. Then every byte captured is searched for each secret and for
the caller's phone (in every usual spelling) and email: no hit is allowed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from patchbay.testing import BillingServer, Fault, FaultProxy

from .observe_support import OtlpReceiver, child_env, http, json_lines, serving, write_config

# Real-looking secrets, each unique enough that a hit can only be a leak.
API_KEY = "bk_live_4c1d9e8f7a6b5c3d2e1f"
OPS_TOKEN = "gw-bearer-8e7f6a5b4c3d2e1f0a9b"
VAPI_SECRET = "vapi-secret-2b3c4d5e6f708192"
AUDIT_KEY = "audit-hmac-1a2b3c4d5e6f7a8b9c0d"
COLLECTOR_KEY = "otlp-key-9f8e7d6c5b4a3b2c1d0e"
SECRETS = (API_KEY, OPS_TOKEN, VAPI_SECRET, AUDIT_KEY, COLLECTOR_KEY)

# Jamie's number, as callers, platforms and APIs spell it, and Jamie's email.
PHONE = "+15551234567"
PHONE_SPELLINGS = (
    PHONE,
    "15551234567",
    "5551234567",
    "555-123-4567",
    "(555) 123-4567",
    "555.123.4567",
    "+1 555 123 4567",
)
EMAIL = "jamie.patel@example.com"
STRANGER_EMAIL = "nobody.known@example.org"  # looked up and not found: still an email
NEEDLES = (*SECRETS, *PHONE_SPELLINGS, EMAIL, STRANGER_EMAIL)

OBSERVE = """
  log: {level: debug, bodies: redacted}
  jsonl: events.jsonl
  audit: {path: audit.jsonl, key: env:AUDIT_KEY}
  prometheus: {path: metrics.prom, interval_s: 0.001}
  otlp: {endpoint: "OTLP_URL", traces: true, metrics: true,
         headers: {x-collector-key: env:COLLECTOR_KEY}}
"""
GATEWAY = """
gateway:
  auth: {bearer: env:OPS_TOKEN, vapi_secret: env:VAPI_SECRET}
"""
LOOKUP = "lookup_customer_invoices"
PAYMENT = {"invoice_id": "inv_1001", "amount": 24700, "payment_method_id": "pm_card_visa4242"}
# An upstream error that repeats what it was sent: the caller's details come back in a body.
ECHO = json.dumps({"error": f"no match for {PHONE} / {EMAIL}", "code": "CS_400", "phone": PHONE})


@pytest.fixture(scope="module")
def billing() -> Iterator[BillingServer]:
    with BillingServer(in_process=True, api_key=API_KEY) as server:
        yield server


class Session:
    """The calls of the session, made from a thread (the proxy and the receiver run on the
    test's event loop); every answer the gateway gives is kept as it came."""

    def __init__(self, url: str, proxy: FaultProxy, loop: asyncio.AbstractEventLoop) -> None:
        self.url = url
        self.proxy = proxy
        self.loop = loop
        self.bearer = {"Authorization": f"Bearer {OPS_TOKEN}"}
        self.answers: list[dict[str, Any]] = []

    def fault(self, **rule: Any) -> None:
        """Arm one fault on the proxy (on its own event loop)."""
        future = asyncio.run_coroutine_threadsafe(self._add(Fault(**rule)), self.loop)
        future.result(timeout=10)

    async def _add(self, fault: Fault) -> None:
        self.proxy.add(fault)

    def tool(self, name: str, arguments: dict[str, Any], call_id: str) -> dict[str, Any]:
        """POST /tools/NAME as the call `call_id` of the caller; the tool result."""
        body = {"arguments": arguments, "call": {"id": call_id, "caller": PHONE}}
        status, raw = http("POST", f"{self.url}/tools/{name}", body, self.bearer)
        assert status == 200, raw
        answer: dict[str, Any] = json.loads(raw)
        self.answers.append(answer)
        return answer

    def get(self, path: str) -> bytes:
        status, raw = http("GET", f"{self.url}{path}", headers=self.bearer)
        assert status == 200, (path, raw[:300])
        return raw

    def play(self) -> list[bytes]:
        """The session; returns the operator payloads read on the way (metrics, dashboard)."""
        status, _ = http(
            "POST", f"{self.url}/calls/c-1/start", {"caller": PHONE}, self.bearer
        )  # the call's prefetch looks the caller up by number
        assert status in (200, 202, 204), status
        ok = self.tool(LOOKUP, {"phone": "555-123-4567"}, "c-1")
        assert ok["ok"] is True, ok
        assert self.tool(LOOKUP, {"email": EMAIL}, "c-2")["ok"] is True
        self.fault(kind="status", status=422, path_prefix="/payments", times=1, body=ECHO)
        refused_payment = self.tool("create_payment", PAYMENT, "c-2")
        assert refused_payment["error"]["code"] == "client_error", refused_payment
        assert self.tool("create_payment", PAYMENT, "c-1")["ok"] is True
        missing = self.tool(LOOKUP, {"email": STRANGER_EMAIL}, "c-3")
        assert missing["result"]["found"] is False, missing  # the API's 404, in words
        for wrong in ({"phone": "call me on 555-123-4567 ok"}, {"email": f"{EMAIL}>"}, {}):
            refused = self.tool(LOOKUP, wrong, "c-4")
            assert refused["error"]["code"] == "invalid_arguments", refused
        self.fault(kind="status", status=500, path_prefix="/invoices", times=3)
        down = self.tool(LOOKUP, {"phone": PHONE}, "c-5")
        assert down["error"]["code"] == "upstream_unavailable", down
        self.fault(kind="status", status=400, path_prefix="/customers", times=1, body=ECHO)
        echoed = self.tool(LOOKUP, {"phone": "(555) 123-4567"}, "c-6")
        assert echoed["ok"] is False, echoed
        self.fault(kind="status", status=401, path_prefix="/customers", times=1, body=ECHO)
        refused_key = self.tool(LOOKUP, {"email": EMAIL}, "c-7")
        assert refused_key["error"]["code"] == "unauthorized", refused_key
        vapi = {
            "message": {
                "type": "tool-calls",
                "call": {"id": "c-9", "customer": {"number": PHONE}},
                "toolCallList": [
                    {"id": "t-1", "name": LOOKUP, "arguments": {"phone": "555.123.4567"}},
                    {"id": "t-2", "name": LOOKUP, "arguments": {"phone": "+1 555 123 4567x"}},
                ],
            }
        }
        status, raw = http("POST", f"{self.url}/vapi", vapi, {"X-Vapi-Secret": VAPI_SECRET})
        assert status == 200, raw
        self.answers.append(json.loads(raw))
        http("POST", f"{self.url}/calls/c-1/end", {}, self.bearer)
        payloads = [self.get("/metrics")]
        status, page = http("GET", f"{self.url}/dashboard", headers=self.bearer)
        if status == 200:  # the dashboard: its page and the figures it polls
            payloads += [page, self.get("/dashboard/data")]
        return payloads


def _hits(name: str, data: bytes) -> list[str]:
    return [f"{needle!r} in {name}" for needle in NEEDLES if needle.encode() in data]


async def test_no_secret_phone_or_email_reaches_any_sink(
    billing: BillingServer, tmp_path: Path
) -> None:
    async with OtlpReceiver() as receiver, FaultProxy(billing.url) as proxy:
        observe = OBSERVE.replace("OTLP_URL", receiver.url)
        config = write_config(tmp_path, observe, GATEWAY)
        env = child_env(
            BILLING_URL=proxy.url,
            BILLING_API_KEY=API_KEY,
            OPS_TOKEN=OPS_TOKEN,
            VAPI_SECRET=VAPI_SECRET,
            AUDIT_KEY=AUDIT_KEY,
            COLLECTOR_KEY=COLLECTOR_KEY,
        )
        loop = asyncio.get_running_loop()

        def run() -> tuple[list[bytes], str]:
            with serving(config, env, "--log-level", "debug") as (url, stderr):
                payloads = Session(url, proxy, loop).play()
            return payloads, stderr[0]

        payloads, stderr = await asyncio.to_thread(run)
        exports = list(receiver.exports)
        spans = receiver.span_names()

    captured: dict[str, bytes] = {
        "the gateway's stderr (logs at debug, bodies redacted)": stderr.encode(),
        "events.jsonl": (tmp_path / "events.jsonl").read_bytes(),
        "audit.jsonl": (tmp_path / "audit.jsonl").read_bytes(),
        "metrics.prom": (tmp_path / "metrics.prom").read_bytes(),
    }
    captured.update({f"operator payload {i}": p for i, p in enumerate(payloads)})
    captured.update({f"OTLP export {i} to {e[0]}": e[2] for i, e in enumerate(exports)})

    # What was captured is the whole session, or finding nothing would prove nothing.
    events = json_lines(tmp_path / "events.jsonl")
    outcomes = {e["outcome"] for e in events if e["kind"] == "tool_call"}
    assert {"ok", "client_error", "invalid_arguments", "upstream_unavailable"} <= outcomes
    assert "unauthorized" in outcomes, outcomes
    audited = json_lines(tmp_path / "audit.jsonl")
    assert len(audited) >= 12 and {line["outcome"] for line in audited} >= outcomes - {"cached"}
    # Bodies were logged (the caller's number among the arguments, masked) at debug level.
    assert '"arguments":{"phone":"[redacted]"}' in stderr and "DEBUG" in stderr
    assert f"execute_tool {LOOKUP}" in spans and "GET /customers/search" in spans, spans
    assert {path for path, _, _ in exports} == {"/v1/traces", "/v1/metrics"}
    assert b"patchbay_tool_calls_total" in captured["metrics.prom"]

    hits = [hit for name, data in captured.items() for hit in _hits(name, data)]
    assert hits == [], "\n".join(hits)
