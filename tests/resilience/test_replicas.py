"""Several replicas in separate processes, sharing one state (Redis, PostgreSQL, or Redis beside
PostgreSQL): one rate, one breaker, one charge."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from patchbay.testing import BillingServer, Fault, FaultProxy

from .support import JAMIE, PAYMENT, billing_yaml

pytestmark = pytest.mark.redis

REPLICA = Path(__file__).with_name("replica.py")
CUSTOMER = {"customer_id": JAMIE}


class Replica:
    """A replica process and the pipes that drive it."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def _line(self) -> Any:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout=30)
        if not line:
            raise RuntimeError("the replica exited")
        return json.loads(line)

    async def call(
        self, tool: str, args: Mapping[str, Any], call_ids: list[str], at: float | None = None
    ) -> list[dict[str, Any]]:
        """Run one tool call per call id in the replica, all at once (from `at`, wall clock)."""
        assert self.proc.stdin is not None
        command = {"tool": tool, "args": dict(args), "call_ids": call_ids, "at": at}
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self.proc.stdin.drain()
        found: list[dict[str, Any]] = await self._line()
        return found

    async def stop(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"quit\n")
            await self.proc.stdin.drain()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


Start = Callable[..., Any]


@pytest.fixture(params=["redis", "redis-cluster", "postgresql", "split"])
def shared_state(request: pytest.FixtureRequest) -> str | dict[str, str]:
    """The `state:` the replicas share: Redis, a 3-node Redis Cluster, PostgreSQL, or Redis
    fast beside PostgreSQL durable."""
    return _state_of(request.param, request)


def _state_of(kind: str, request: pytest.FixtureRequest) -> str | dict[str, str]:
    if kind == "redis-cluster":
        cluster: str = request.getfixturevalue("redis_cluster_url")
        return cluster
    redis_url: str = request.getfixturevalue("redis_url")
    if kind == "redis":
        return redis_url
    postgres_url: str = request.getfixturevalue("postgres_url")
    if kind == "postgresql":
        return postgres_url
    return {"fast": redis_url, "durable": postgres_url}


@pytest.fixture
async def replicas(
    request: pytest.FixtureRequest, tmp_path: Path, redis_key_prefix: str, postgres_key_prefix: str
) -> AsyncIterator[Start]:
    """Start n replica processes over one config text (its `state:` shared by all of them)."""
    started: list[Replica] = []

    async def start(n: int, text: str, env: Mapping[str, str]) -> list[Replica]:
        config = tmp_path / f"replica-{len(started)}.yaml"
        config.write_text(text)
        prefix = redis_key_prefix if "postgres" not in text else postgres_key_prefix
        if "redis+cluster" in text:
            prefix = request.getfixturevalue("redis_cluster_prefix")
        child_env = {**os.environ, **env, "PATCHBAY_KEY_PREFIX": prefix}
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(REPLICA),
                str(config),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=child_env,
            )
            for _ in range(n)
        ]
        group = [Replica(p) for p in procs]
        started.extend(group)
        for replica in group:
            assert (await replica._line())["ready"]
        return group

    yield start
    for replica in started:
        await replica.stop()


def _env(billing: BillingServer, url: str) -> dict[str, str]:
    return {"BILLING_URL": url, "BILLING_API_KEY": billing.api_key}


@pytest.fixture
async def billing() -> AsyncIterator[BillingServer]:
    # A process of its own: three replicas must not contend with it for this test's GIL.
    async with BillingServer() as server:
        yield server


@pytest.fixture
async def proxy(billing: BillingServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(billing.url) as p:
        yield p


async def test_replicas_hold_one_global_rate(
    replicas: Start, shared_state: str | dict[str, str], billing: BillingServer, proxy: FaultProxy
) -> None:
    rate, burst, each = 20, 2, 15
    text = billing_yaml(
        {"rate_limit": {"per_second": rate, "burst": burst}},
        {"get_customer": {"budget_s": 5}},
        state=shared_state,
    )
    group = await replicas(3, text, _env(billing, proxy.url))
    at = time.time() + 0.3
    answers = await asyncio.gather(
        *(
            r.call("get_customer", CUSTOMER, [f"r{n}-{i}" for i in range(each)], at)
            for n, r in enumerate(group)
        )
    )
    results = [result for answer in answers for result in answer]
    assert all(r["ok"] for r in results), [r["error"] for r in results if not r["ok"]][:2]
    stats = proxy.stats()
    assert stats.total == 3 * each
    # Scheduling jitter may bunch a request or two; separate limits would let in 3 x 22.
    assert stats.max_in_window(1.0) <= rate + burst + 2, stats.per_second
    assert stats.timestamps[-1] >= (3 * each - burst) / rate - 0.1


async def test_replicas_see_one_breaker(
    replicas: Start, shared_state: str | dict[str, str], billing: BillingServer, proxy: FaultProxy
) -> None:
    breaker = {"breaker": {"failure_rate": 0.5, "window": 10, "min_calls": 5, "open_s": 30}}
    a, b = await replicas(2, billing_yaml(breaker, state=shared_state), _env(billing, proxy.url))
    # B has seen the breaker closed, and holds that copy.
    assert (await b.call("get_customer", CUSTOMER, ["b-0"]))[0]["ok"]
    proxy.add(Fault("status", status=503))
    # One window across replicas: B's success and A's failures, 4 of 5 failed: open.
    first = [(await a.call("get_customer", CUSTOMER, [f"a-{i}"]))[0] for i in range(6)]
    codes = [r["error"]["code"] for r in first]
    assert codes == ["upstream_unavailable"] * 4 + ["circuit_open"] * 2
    seen = proxy.stats().total
    await asyncio.sleep(0.1)  # beyond the 50 ms refresh bound of B's copy
    refused = await b.call("get_customer", CUSTOMER, [f"b-{i}" for i in range(1, 6)])
    assert all(r["error"]["code"] == "circuit_open" for r in refused), [
        (r["ok"], r["error"] and r["error"]["code"]) for r in refused
    ]
    assert refused[0]["say"] == "I can't reach billing right now."
    assert proxy.stats().total == seen, "B made no request"


@pytest.fixture
async def careless_upstream() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A payments API that ignores idempotency keys: every POST is one more charge."""
    charges: list[dict[str, Any]] = []

    async def pay(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(0.2)  # long enough for the duplicates to arrive meanwhile
        charges.append(body)
        number = f"PAY-{len(charges)}"
        return web.json_response(
            {"status": "completed", "confirmation_number": number, "amount": body["amount"]},
            status=201,
        )

    app = web.Application()
    app.router.add_post("/payments", pay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", charges
    await runner.cleanup()


async def test_replicas_dedupe_one_payment_asked_of_all(
    replicas: Start,
    shared_state: str | dict[str, str],
    billing: BillingServer,
    careless_upstream: tuple[str, list[dict[str, Any]]],
) -> None:
    url, charges = careless_upstream
    group = await replicas(3, billing_yaml(state=shared_state), _env(billing, url))
    at = time.time() + 0.3
    answers = await asyncio.gather(*(r.call("pay_invoice", PAYMENT, ["call-1"], at) for r in group))
    results = [answer[0] for answer in answers]
    assert all(r["ok"] for r in results), results
    assert {r["result"]["confirmation_number"] for r in results} == {"PAY-1"}
    assert sum(1 for r in results if r["meta"].get("deduplicated")) == 2
    # Asked again later, of every replica: still the first answer, still one charge.
    again = await asyncio.gather(*(r.call("pay_invoice", PAYMENT, ["call-1"]) for r in group))
    assert all(a[0]["meta"]["deduplicated"] for a in again)
    assert len(charges) == 1
    # Another call is another payment.
    other = await group[0].call("pay_invoice", PAYMENT, ["call-2"])
    assert other[0]["result"]["confirmation_number"] == "PAY-2"
