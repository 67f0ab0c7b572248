"""Gateway fuzz: hostile request bodies through every tool-call route of the ASGI app.

The billing example's gateway, with every way in configured and the MCP endpoint mounted, is
driven in-process (no sockets) by a seeded generator: invalid UTF-8, lone surrogate escapes,
deep nesting, huge numbers, wrong types, oversized bodies, Vapi messages with many tool
calls, broken JSON-RPC, with valid credentials mostly and without them sometimes. Counted, and
all must be 0: 5xx answers, answers that are not JSON (or JSON server-sent events on /mcp),
requests the app raised out of or never answered. PATCHBAY_FUZZ_GATEWAY sets the number of
requests (`make fuzz`: 20,000; default a short form for `make test`).
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from patchbay import ToolRuntime
from patchbay.gateway import create_app, sign_retell
from patchbay.integrations import mcp_asgi
from patchbay.spec import load_config_text

from .asgi import Answer, AsgiClient
from .bodies import BodyMaker
from .support import GATEWAY_CASES, SEED, RecordingTransport, Tally, short

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "billing" / "patchbay.yaml"
TOKEN = "fuzz-token-1f2e"
ACME_TOKEN = "fuzz-acme-token-9c8d"
VAPI_SECRET = "fuzz-vapi-5a4b"
RETELL_KEY = "key_fuzz_retell_3c2d"
ELEVENLABS_SECRET = "fuzz-el-7e6f"
MCP_ACCEPT = b"application/json, text/event-stream"
COUNTS = ("5xx_answers", "non_json_answers", "unhandled_exceptions", "unanswered")
VALID = {
    "customer_id": "cus_8F2kLq",
    "phone": "+15551234567",
    "email": "jamie.patel@example.com",
    "invoice_id": "inv_1001",
    "amount": 100,
    "payment_method_id": "pm_card_visa4242",
}
BAD_SIGNATURES = [
    "",
    "garbage",
    "v=,d=",
    "v=9999999999999999,d=00",
    "v=" + "9" * 5000 + ",d=00",
    "v=-1,d=00",
    "v=1700000000000,d=" + "0" * 64,
    "v=\u0661\u0662,d=00",
]
BAD_LENGTHS = [b"0", b"abc", b"-1", b"99999999999999999999999999", b"1e3", b" 12", b"\xff"]


def _config() -> Any:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["gateway"] = {
        "auth": {
            "bearer": "env:FUZZ_TOKEN",
            "vapi_secret": "env:FUZZ_VAPI",
            "retell_api_key": "env:FUZZ_RETELL",
            "elevenlabs_secret": "env:FUZZ_ELEVENLABS",
            "tenants": {"acme": {"bearer": "env:FUZZ_ACME_TOKEN"}},
        }
    }
    data["integrations"]["billing"]["tenants"] = {"acme": {}}
    env = {"BILLING_URL": "http://127.0.0.1:9"}
    return load_config_text(yaml.safe_dump(data), base_dir=EXAMPLE.parent, env=env)


def answer_problem(answer: Answer) -> str | None:
    """Why `answer` is not a well-formed JSON answer below 500, or None."""
    if answer.status == 0:
        return "no status"
    if answer.status >= 500:
        return f"status {answer.status}"
    if answer.status in (202, 204) and not answer.body:
        return None
    ctype = answer.headers.get("content-type", "")
    try:
        if ctype.startswith("text/event-stream"):
            data = [
                line[5:] for line in answer.body.decode().splitlines() if line.startswith("data:")
            ]
            if not data:
                return "event stream without data"
            for item in data:
                json.loads(item)
            return None
        if not ctype.startswith("application/json"):
            return f"{answer.status} content-type {ctype!r} {answer.body[:40]!r}"
        json.loads(answer.body.decode("utf-8"))
    except ValueError:
        return f"{answer.status} body not JSON {answer.body[:40]!r}"
    return None


class _Gateway:
    """What one fuzz request goes through: auth headers per route, and the MCP session."""

    def __init__(self, client: AsgiClient, rng: random.Random, maker: BodyMaker) -> None:
        self.client = client
        self.rng = rng
        self.maker = maker
        self.session: bytes | None = None

    def auth(self, header: bytes, secret: str) -> tuple[str, list[tuple[bytes, bytes]]]:
        """The route's credential mostly; a tenant's, none, a wrong one or two sometimes."""
        draw = self.rng.random()
        if draw < 0.8:
            return "auth", [(header, secret.encode())]
        if draw < 0.85:
            return "acme", [(b"authorization", f"Bearer {ACME_TOKEN}".encode())]
        if draw < 0.9:
            return "no_auth", []
        if draw < 0.95:
            return "wrong_auth", [(header, b"Bearer wrong\xff\x00")]
        return "auth_twice", [(header, secret.encode()), (header, b"other")]

    async def mcp_session(self) -> None:
        """Open an MCP session, so tools/call requests reach the tools."""
        hello = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "fuzz", "version": "1"},
            },
        }
        headers = self._mcp_headers([(b"authorization", f"Bearer {TOKEN}".encode())])
        answer = await self.client.request("POST", "/mcp", json.dumps(hello).encode(), headers)
        assert answer.status == 200, answer
        self.session = answer.headers["mcp-session-id"].encode()
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        headers = self._mcp_headers([(b"authorization", f"Bearer {TOKEN}".encode())])
        answer = await self.client.request("POST", "/mcp", json.dumps(note).encode(), headers)
        assert answer.status == 202, answer

    def _mcp_headers(self, auth: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", b"application/json"), (b"accept", MCP_ACCEPT), *auth]
        if self.session is not None and self.rng.random() < 0.8:
            headers.append((b"mcp-session-id", self.session))
            headers.append((b"mcp-protocol-version", b"2025-06-18"))
        return headers

    def plan(self) -> tuple[str, str, str, bytes, list[tuple[bytes, bytes]], bytes]:
        """One fuzz request: (route, label, path, body, headers, query string)."""
        m = self.maker
        draw = self.rng.random()
        query = b""
        bearer = (b"authorization", f"Bearer {TOKEN}")
        if draw < 0.25:
            tool = m.tool_name()
            label, body = m.api(tool)
            a_label, headers = self.auth(b"authorization", f"Bearer {TOKEN}")
            route, path = "/tools/{name}", f"/tools/{tool}"
        elif draw < 0.45:
            label, body = m.vapi()
            a_label, headers = self.auth(b"x-vapi-secret", VAPI_SECRET)
            route, path = "/vapi", "/vapi"
        elif draw < 0.6:
            tool = m.tool_name()
            label, body = m.retell(tool)
            route, path = "/retell/{name}", f"/retell/{tool}"
            if self.rng.random() < 0.85:
                a_label, headers = (
                    "signed",
                    [(b"x-retell-signature", sign_retell(body, RETELL_KEY).encode())],
                )
            else:
                signature = self.rng.choice(BAD_SIGNATURES)
                a_label = f"signature={short(signature, 20)}"
                headers = [(b"x-retell-signature", signature.encode())]
            if self.rng.random() < 0.2:
                query = b"call_id=fz-q&caller=%2B15551234567"
        elif draw < 0.75:
            tool = m.tool_name()
            label, body = m.elevenlabs(tool)
            a_label, headers = self.auth(b"x-elevenlabs-secret", ELEVENLABS_SECRET)
            route, path = "/elevenlabs/{name}", f"/elevenlabs/{tool}"
        elif draw < 0.85:
            label, body = m.lifecycle()
            a_label, headers = self.auth(*bearer)
            which = self.rng.choice(["start", "end"])
            call_id = self.rng.choice(["fz-1", "fz-2", "..", "%2e%2e", "a" * 2000, "\u00e9"])
            route, path = f"/calls/{{id}}/{which}", f"/calls/{call_id}/{which}"
        elif draw < 0.98:
            label, body = m.mcp()
            a_label, auth = self.auth(*bearer)
            headers = self._mcp_headers(auth)
            route, path = "/mcp", "/mcp"
        else:
            fmt = self.rng.choice([b"openai", b"mcp", b"nope", b"%ff", b"\xff", b"a" * 5000])
            a_label, headers = self.auth(*bearer)
            return (
                "GET /tools",
                f"format={short(fmt.decode('latin-1'))} {a_label}",
                "/tools",
                b"",
                headers,
                b"format=" + fmt,
            )
        if route != "/mcp":
            headers = [(b"content-type", b"application/json"), *headers]
        if self.rng.random() < 0.05:
            lie = self.rng.choice(BAD_LENGTHS)
            headers.append((b"content-length", lie))
            a_label += f" content-length={lie!r}"
        elif self.rng.random() < 0.5:
            headers.append((b"content-length", str(len(body)).encode()))
        return route, f"{label} [{a_label}]", path, body, headers, query


@pytest.mark.timeout(max(120, GATEWAY_CASES // 20))
async def test_gateway_fuzz(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {
        "BILLING_API_KEY": "fuzz-key-0000",
        "FUZZ_TOKEN": TOKEN,
        "FUZZ_ACME_TOKEN": ACME_TOKEN,
        "FUZZ_VAPI": VAPI_SECRET,
        "FUZZ_RETELL": RETELL_KEY,
        "FUZZ_ELEVENLABS": ELEVENLABS_SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    # 20,000 refusals logged at warning are not news, and would be kept by pytest's capture.
    monkeypatch.setattr(logging.getLogger("patchbay"), "level", logging.ERROR)
    rng = random.Random(SEED)
    config = _config()
    tally = Tally("gateway fuzz")
    statuses: Counter[int] = Counter()
    transport = RecordingTransport()
    params = {name: list(tool.parameters) for name, tool in config.tools.items()}
    maker = BodyMaker(rng, sorted(config.tools), params, VALID)
    async with ToolRuntime(config, transport=transport, sinks=[]) as rt:
        mcp = mcp_asgi(rt)
        app = create_app(rt, config, extra_mounts=[mcp.route()], extra_lifespan=mcp.lifespan)
        async with AsgiClient(app) as client:
            gateway = _Gateway(client, rng, maker)
            await gateway.mcp_session()
            for _ in range(GATEWAY_CASES):
                route, label, path, body, headers, query = gateway.plan()
                method = "GET" if route == "GET /tools" else "POST"
                chunks = 1 if rng.random() < 0.8 else rng.randint(2, 50)
                repro = f"{method} {short(path, 60)} {label}"
                tally.cases += 1
                try:
                    answer = await client.request(
                        method, path, body, headers, query=query, chunks=chunks
                    )
                except TimeoutError:
                    tally.fail("unanswered", route, repro)
                    continue
                except Exception as exc:
                    tally.fail("unhandled_exceptions", f"{route} {type(exc).__name__}", repro)
                    continue
                statuses[answer.status] += 1
                problem = answer_problem(answer)
                if problem is None:
                    continue
                count = "5xx_answers" if problem.startswith("status 5") else "non_json_answers"
                tally.fail(count, f"{route} {problem}", repro)
    tally.requests = len(transport.requests)
    tally.outcomes.update({str(k): v for k, v in statuses.items()})
    line = tally.line(COUNTS)
    with capsys.disabled():
        print(f"\n{line}")
    assert sum(tally.counts[c] for c in COUNTS) == 0, f"{line}\n{tally.report()}"
