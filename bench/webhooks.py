"""Webhooks into live calls: receipt to delivery, and durable acceptance throughput.

Receipt to delivery: a Standard Webhooks-signed delivery handed to `accept_webhook` (verified,
stored in the inbox, processed, published) until the call's subscriber gets the event, at a
steady 200 deliveries/s; on one replica (memory, SQLite) and across two runtimes sharing a
private Redis (accepted by A, the subscriber on B). Targets: p99 < 20 ms on one replica, < 50 ms
across replicas. Acceptance: deliveries/s answered 200 with 32 in flight, beside the bare
verification of the same deliveries (the floor: what no store costs).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from standardwebhooks import Webhook

from patchbay import ToolRuntime
from patchbay.http._webhooks import verify_delivery
from patchbay.spec import load_config_text
from patchbay.state import MemoryStore, StateStore, open_store
from resilience import _redis_server

SECRET = "whsec_" + base64.b64encode(b"bench-secret-0123456789ab").decode()
RATE_PER_S = 200.0
CONFIG = """
version: 1
webhooks:
  api:
    verify: {scheme: standard, secret: env:BENCH_WEBHOOK_SECRET}
    on:
      note:
        call: {id: data.call_id}
        state: {i: data.i}
        say: "Note {data.i}."
"""
_SIGNER = Webhook(SECRET)


def _runtime(store: StateStore) -> ToolRuntime:
    os.environ["BENCH_WEBHOOK_SECRET"] = SECRET  # env: references read the process environment
    cfg = load_config_text(CONFIG, env={"BENCH_WEBHOOK_SECRET": SECRET})
    return ToolRuntime(cfg, sinks=[], store=store)


def _delivery(call_id: str, i: int) -> tuple[dict[str, str], bytes]:
    body = json.dumps({"type": "note", "data": {"call_id": call_id, "i": i}}).encode()
    msg_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.now(tz=UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": _SIGNER.sign(msg_id, now, body.decode()),
    }, body


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _latency(receiver: ToolRuntime, subscriber: ToolRuntime, n: int) -> list[float]:
    call_id = f"bench-{uuid.uuid4().hex[:8]}"
    await receiver.start_call(call_id)
    deliveries = [_delivery(call_id, i) for i in range(n)]
    sent: dict[int, float] = {}
    took: list[float] = []
    ready = asyncio.Event()

    async def follow() -> None:
        stream = subscriber.call_events(call_id)
        ready.set()
        async for event in stream:
            took.append((time.perf_counter() - sent[event.data["i"]]) * 1000)

    follower = asyncio.ensure_future(follow())
    await ready.wait()
    await asyncio.sleep(0.2)
    start = time.perf_counter()
    pending = []
    for i, (headers, body) in enumerate(deliveries):
        delay = start + i / RATE_PER_S - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[i] = time.perf_counter()
        pending.append(asyncio.ensure_future(receiver.accept_webhook("api", headers, body)))
    await asyncio.gather(*pending)
    await receiver.drain_webhooks(10)
    await asyncio.sleep(0.2)
    await receiver.end_call(call_id)
    await asyncio.wait_for(follower, 10)
    return took


async def _throughput(rt: ToolRuntime, n: int, in_flight: int = 32) -> float:
    await rt.start_call("bench-accept")
    deliveries = [_delivery("bench-accept", i) for i in range(n)]
    queue = iter(deliveries)

    async def worker() -> None:
        for headers, body in queue:
            status, _ = await rt.accept_webhook("api", headers, body)
            assert status == 200

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    rate = n / (time.perf_counter() - start)
    await rt.drain_webhooks(30)
    return rate


def _verify_floor(n: int) -> float:
    cfg = load_config_text(CONFIG, env={"BENCH_WEBHOOK_SECRET": SECRET})
    spec = cfg.webhooks["api"].verify
    deliveries = [_delivery("floor", i) for i in range(n)]
    start = time.perf_counter()
    for headers, body in deliveries:
        verify_delivery(spec, [SECRET], headers, body)
        json.loads(body)
    return n / (time.perf_counter() - start)


def _line(name: str, took: list[float], n: int, target: float) -> None:
    p50, p99 = _percentile(took, 0.5), _percentile(took, 0.99)
    ok = p99 < target and len(took) == n
    print(
        f"{name}: {len(took)}/{n} webhooks at {RATE_PER_S:.0f}/s, receipt to delivery "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms (target p99 < {target:.0f} ms) "
        f"{'[ok]' if ok else '[MISSED]'}",
        flush=True,
    )


async def bench_webhooks(n: int = 1000, burst: int = 2000) -> None:
    """Print receipt-to-delivery percentiles and acceptance rates (memory, SQLite, Redis)."""
    floor = _verify_floor(burst)
    print(f"floor: verify + parse only: {floor:,.0f} deliveries/s", flush=True)
    async with _runtime(MemoryStore()) as one:
        await _latency(one, one, 100)
        _line("one replica (memory)", await _latency(one, one, n), n, 20.0)
        rate = await _throughput(one, burst)
        print(f"accepted on memory: {rate:,.0f}/s ({floor / rate:.2f}x the floor)", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        async with _runtime(open_store(f"sqlite:///{Path(folder) / 's.db'}")) as one:
            await _latency(one, one, 100)
            _line("one replica (sqlite)", await _latency(one, one, n), n, 20.0)
            rate = await _throughput(one, burst)
            print(f"accepted on sqlite: {rate:,.0f}/s ({floor / rate:.2f}x the floor)", flush=True)
    async with _redis_server() as url:
        if url is None:
            print("webhooks on redis: skipped (no redis-server installed)", flush=True)
            return
        prefix = f"patchbay-bench:{uuid.uuid4().hex}:"
        async with (
            _runtime(open_store(url, key_prefix=prefix)) as a,
            _runtime(open_store(url, key_prefix=prefix)) as b,
        ):
            await _latency(a, b, 100)
            _line("two replicas (redis)", await _latency(a, b, n), n, 50.0)
            rate = await _throughput(a, burst)
            print(f"accepted on redis: {rate:,.0f}/s ({floor / rate:.2f}x the floor)", flush=True)


if __name__ == "__main__":
    asyncio.run(bench_webhooks())
