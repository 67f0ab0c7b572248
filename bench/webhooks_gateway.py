"""Durable webhook acceptance through a real gateway, beside its plain tool-call rate.

`patchbay serve` runs in a subprocess on SQLite state, then on a private Redis; the billing
example's API runs in its own process. With the same number of senders in flight, this process
posts (a) signed deliveries to `POST /webhooks/billing` (each answered 2xx only once stored in
the durable inbox) and (b) the example's lookup to `POST /tools/lookup_customer_invoices`, in
alternating rounds, and prints each rate and their ratio: what it costs to acknowledge a
webhook durably, against what a tool call costs through the same gateway and state.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from standardwebhooks import Webhook

from patchbay.testing import BillingServer
from resilience import _redis_server

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "billing" / "patchbay.yaml"
SECRET = "whsec_" + "YmVuY2gtZ2F0ZXdheS13ZWJob29rLXNlY3JldA=="
TOKEN = "bench-webhook-gateway-token"
IN_FLIGHT = 32
ROUND = 1000  # requests of one kind per round
ROUNDS = 3
_SIGNER = Webhook(SECRET)
Post = Callable[[int], Awaitable[None]]


def _config(state: str, folder: Path) -> Path:
    """The billing example with a gateway bearer, the given state and a webhook source."""
    config: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    config["state"] = state
    config["gateway"] = {"auth": {"bearer": "env:BENCH_GATEWAY_TOKEN"}}
    config["webhooks"] = {
        "billing": {
            "verify": {"scheme": "standard", "secret": "env:BENCH_WEBHOOK_SECRET"},
            "on": {"note": {"call": {"id": "data.call_id"}, "say": "Note {data.i}."}},
        }
    }
    path = folder / "patchbay.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _spawn(config: Path, billing: BillingServer) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "BILLING_URL": billing.url,
        "BILLING_API_KEY": billing.api_key,
        "BENCH_GATEWAY_TOKEN": TOKEN,
        "BENCH_WEBHOOK_SECRET": SECRET,
        # the example's handler modules, found beside its own config
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(EXAMPLE.parent), os.environ.get("PYTHONPATH")])
        ),
    }
    command = [sys.executable, "-m", "patchbay.cli", "serve", "-c", str(config)]
    proc = subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


async def _serve(config: Path, billing: BillingServer) -> tuple[subprocess.Popen[bytes], str]:
    proc, url = _spawn(config, billing)
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url + "/healthz") as answer:
                    if answer.status == 200:
                        return proc, url
            except aiohttp.ClientConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            await asyncio.sleep(0.05)


def _delivery(call_id: str, i: int) -> tuple[dict[str, str], bytes]:
    body = json.dumps({"type": "note", "data": {"call_id": call_id, "i": i}}).encode()
    msg_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.now(tz=UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": _SIGNER.sign(msg_id, now, body.decode()),
        "content-type": "application/json",
    }, body


def _webhook(
    session: aiohttp.ClientSession, url: str, signed: dict[int, tuple[dict[str, str], bytes]]
) -> Post:
    """Posts deliveries signed before the round (signing is the sender's cost, not ours)."""

    async def post(i: int) -> None:
        headers, body = signed.pop(i)
        async with session.post(url + "/webhooks/billing", data=body, headers=headers) as answer:
            data = await answer.read()
            if answer.status // 100 != 2:
                raise RuntimeError(f"{answer.status} {data.decode(errors='replace')}")

    return post


def _tool(session: aiohttp.ClientSession, url: str, call_ids: list[str]) -> Post:
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}

    async def post(i: int) -> None:
        body = {"arguments": {"phone": "555-123-4567"}, "call": {"id": call_ids[i % len(call_ids)]}}
        target = url + "/tools/lookup_customer_invoices"
        async with session.post(target, json=body, headers=headers) as answer:
            data = await answer.read()
            if answer.status != 200 or not json.loads(data).get("ok"):
                raise RuntimeError(f"{answer.status} {data.decode(errors='replace')}")

    return post


async def _rate(post: Post, n: int, start: int) -> float:
    numbers = iter(range(start, start + n))

    async def sender() -> None:
        for i in numbers:
            await post(i)

    began = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(IN_FLIGHT)))
    return n / (time.perf_counter() - began)


async def _one(name: str, state: str, folder: Path, billing: BillingServer) -> None:
    proc, url = await _serve(_config(state, folder), billing)
    try:
        connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
        async with aiohttp.ClientSession(connector=connector) as session:
            call_ids = [f"bench-wh-{uuid.uuid4().hex[:8]}-{k}" for k in range(64)]
            auth = {"authorization": f"Bearer {TOKEN}"}
            for call_id in call_ids:
                async with session.post(f"{url}/calls/{call_id}/start", headers=auth) as answer:
                    assert answer.status == 200, await answer.text()
            signed: dict[int, tuple[dict[str, str], bytes]] = {}
            hooks, tools = _webhook(session, url, signed), _tool(session, url, call_ids)

            def sign(start: int, n: int) -> None:
                for i in range(start, start + n):
                    signed[i] = _delivery(call_ids[i % len(call_ids)], i)

            sign(0, 200)
            await _rate(hooks, 200, 0)  # warm both paths
            await _rate(tools, 200, 0)
            webhook_rates, tool_rates = [], []
            for r in range(ROUNDS):
                sign((r + 1) * ROUND, ROUND)
                webhook_rates.append(await _rate(hooks, ROUND, (r + 1) * ROUND))
                tool_rates.append(await _rate(tools, ROUND, (r + 1) * ROUND))
        accepted, called = max(webhook_rates), max(tool_rates)
        print(
            f"gateway on {name}, {IN_FLIGHT} senders: webhooks accepted durably (2xx) "
            f"{accepted:,.0f}/s, tool calls (POST /tools) {called:,.0f}/s; "
            f"webhooks/tool calls {accepted / called:.2f}x",
            flush=True,
        )
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 15)


async def bench_webhooks_gateway() -> None:
    """Print durable acceptance and tool-call rates through `patchbay serve` (SQLite, Redis)."""
    async with BillingServer() as billing:
        with tempfile.TemporaryDirectory() as folder:
            await _one("sqlite", f"sqlite:///{Path(folder) / 's.db'}", Path(folder), billing)
        async with _redis_server() as url:
            if url is None:
                print("gateway webhooks on redis: skipped (no redis-server installed)", flush=True)
                return
            with tempfile.TemporaryDirectory() as folder:
                await _one("redis", url, Path(folder), billing)


if __name__ == "__main__":
    asyncio.run(bench_webhooks_gateway())
