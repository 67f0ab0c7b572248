"""Chaos: signed webhooks into live calls while the gateway is killed with kill -9, twice.

A real `patchbay serve` subprocess (on SQLite, then on Redis) takes PATCHBAY_CHAOS_WEBHOOKS
deliveries (`make test`: 300; `make chaos`: 5000) from several concurrent senders: genuine
events each sent one to three times (duplicates), shuffled (out of order), mixed with forgeries
(a made-up signature, the wrong secret, a genuine delivery's id and signature on another body)
and correctly signed deliveries whose timestamps are ten minutes stale or in the future. The
gateway is killed with SIGKILL a third and two thirds of the way through and started again on
the same port and state; like a real sender, the senders retry whatever got no answer or a 5xx.
Afterwards, from the calls' durable event logs: every genuine event was applied exactly once (no
loss, no duplicate) with its own words, every forged or stale delivery was answered 401 and left
no trace, and nothing went to the unmatched list.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import redis
from standardwebhooks import Webhook

from patchbay.runtime._callevents import CallEvents
from patchbay.state import RedisStore, SQLiteStore, StateStore

DELIVERIES = int(os.environ.get("PATCHBAY_CHAOS_WEBHOOKS", "300"))
SEED = int(os.environ.get("PATCHBAY_CHAOS_SEED", "20240601"))
SENDERS = 8
PER_CALL = 100  # events per call: well inside the call's event log (the last 200 events)
FORGED, STALE = 0.10, 0.05  # shares of the deliveries
TOKEN = "tok-webhook-chaos-5d1e"
SECRET = "whsec_" + base64.b64encode(b"chaos-webhook-secret-0123").decode()
WRONG = "whsec_" + base64.b64encode(b"not-the-secret-at-all-987").decode()
# The inbox lease of a worker killed mid-way runs out after 10 s; then the next gateway
# processes what the killed one held.
SETTLE_S = 60.0 + DELIVERIES / 50
pytestmark = pytest.mark.timeout(120 + DELIVERIES // 20)

CONFIG = """
version: 1
state: %(state)s
gateway:
  auth: {bearer: env:CHAOS_GATEWAY_TOKEN}
webhooks:
  billing:
    verify: {scheme: standard, secret: env:CHAOS_WEBHOOK_SECRET}
    on:
      note:
        call: {id: data.call_id}
        state: {last: data.n}
        say: "Note {data.n}."
"""


@dataclass
class Send:
    """One delivery the senders must get answered."""

    kind: str  # genuine, bad_signature, wrong_secret, tampered, stale, future
    msg_id: str
    body: bytes
    n: int


def _plan(run: str, rng: random.Random) -> tuple[list[Send], dict[int, str], list[str]]:
    """The shuffled deliveries, each genuine event's call by its n, and the calls."""
    genuine: list[Send] = []
    owner: dict[int, str] = {}
    target = round(DELIVERIES * (1 - FORGED - STALE))
    n = 0
    while len(genuine) < target:
        call = f"c-wh-{run}-{n // PER_CALL}"
        body = json.dumps({"type": "note", "data": {"call_id": call, "n": n}}).encode()
        owner[n] = call
        for _ in range(min(rng.choice((1, 2, 3)), target - len(genuine))):
            genuine.append(Send("genuine", f"msg_{run}_{n}", body, n))
        n += 1
    calls = sorted(set(owner.values()))
    hostile: list[Send] = []
    for i in range(DELIVERIES - len(genuine)):
        bad = 1_000_000 + i  # an n no genuine event has
        call = rng.choice(calls)
        body = json.dumps({"type": "note", "data": {"call_id": call, "n": bad}}).encode()
        share = i / max(1, DELIVERIES - len(genuine))
        if share < STALE / (FORGED + STALE):
            kind = rng.choice(("stale", "future"))
            hostile.append(Send(kind, f"msg_{run}_old_{i}", body, bad))
        else:
            kind = rng.choice(("bad_signature", "wrong_secret", "tampered"))
            # a tampered delivery carries a genuine event's id (signed for the genuine body)
            msg_id = f"msg_{run}_{rng.randrange(n)}" if kind == "tampered" else f"msg_{run}_f{i}"
            hostile.append(Send(kind, msg_id, body, bad))
    sends = genuine + hostile
    rng.shuffle(sends)
    return sends, owner, calls


def _headers(send: Send, genuine_bodies: dict[str, bytes]) -> dict[str, str]:
    """Signed afresh for each attempt (a sender's retry carries a new timestamp)."""
    now = datetime.now(tz=UTC)
    when = now
    if send.kind == "stale":
        when = now - timedelta(minutes=10)
    elif send.kind == "future":
        when = now + timedelta(minutes=10)
    secret = WRONG if send.kind == "wrong_secret" else SECRET
    signed_body = genuine_bodies[send.msg_id] if send.kind == "tampered" else send.body
    signature = Webhook(secret).sign(send.msg_id, when, signed_body.decode())
    if send.kind == "bad_signature":
        signature = "v1," + base64.b64encode(secrets.token_bytes(32)).decode()
    return {
        "webhook-id": send.msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gateway:
    """`patchbay serve` on one port and one state, killed and started again at will."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log = (config.parent / "serve.log").open("ab")  # read when something fails
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.kills = self.revived = 0
        self.env = {
            **os.environ,
            "CHAOS_WEBHOOK_SECRET": SECRET,
            "CHAOS_GATEWAY_TOKEN": TOKEN,
        }

    def start(self) -> None:
        command = [sys.executable, "-m", "patchbay.cli", "serve", "-c", str(self.config)]
        self.procs.append(
            subprocess.Popen(
                [*command, "--port", str(self.port), "--log-level", "error"],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=self.log,
            )
        )

    def revive(self) -> None:
        """Start it again if it died on its own (as a supervisor would), e.g. a port not free
        again yet after the kill."""
        if self.procs[-1].poll() is not None:
            self.revived += 1
            assert self.revived <= 3, self.tail()
            self.start()

    def tail(self) -> str:
        self.log.flush()
        return (self.config.parent / "serve.log").read_text(errors="replace")[-2000:]

    def kill_9(self) -> None:
        proc = self.procs[-1]
        self.kills += 1
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        self.log.close()


@asynccontextmanager
async def serving(config: Path) -> AsyncIterator[Gateway]:
    gateway = Gateway(config)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


async def _healthy(session: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            async with session.get(url + "/healthz") as answer:
                if answer.status == 200:
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        assert time.monotonic() < deadline, "the gateway did not start"
        await asyncio.sleep(0.05)


async def _burst(
    session: aiohttp.ClientSession, gateway: Gateway, sends: list[Send]
) -> dict[str, list[int]]:
    """Send everything from SENDERS senders, killing the gateway at a third and two thirds."""
    bodies = {s.msg_id: s.body for s in sends if s.kind == "genuine"}
    queue = deque(sends)
    answered: dict[str, list[int]] = {}
    done = 0
    kills = [len(sends) // 3, 2 * len(sends) // 3]

    async def deliver(send: Send) -> int:
        delay = 0.02
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "a delivery was never answered"
            gateway.revive()
            try:
                async with session.post(
                    gateway.url + "/webhooks/billing",
                    data=send.body,
                    headers=_headers(send, bodies),
                ) as answer:
                    assert answer.content_type == "application/json"
                    json.loads(await answer.read())
                    if answer.status < 500:
                        return answer.status
            except (aiohttp.ClientError, TimeoutError):
                pass  # the gateway died under the request: send it again
            await asyncio.sleep(delay)
            delay = min(0.5, delay * 2)

    async def sender() -> None:
        nonlocal done
        while queue:
            send = queue.popleft()
            status = await deliver(send)
            answered.setdefault(send.kind, []).append(status)
            done += 1
            if kills and done >= kills[0]:
                kills.pop(0)
                gateway.kill_9()  # mid-burst: the other senders' requests are in flight
                gateway.start()

    await asyncio.gather(*(sender() for _ in range(SENDERS)))
    return answered


async def _chaos(state: str, store: StateStore, tmp_path: Path, run: str) -> None:
    rng = random.Random(SEED)
    sends, owner, calls = _plan(run, rng)
    config = tmp_path / "patchbay.yaml"
    config.write_text(CONFIG % {"state": state})
    timeout = aiohttp.ClientTimeout(total=10)
    async with serving(config) as gateway, aiohttp.ClientSession(timeout=timeout) as session:
        await _healthy(session, gateway.url)
        for call in calls:
            url = f"{gateway.url}/calls/{call}/start"
            headers = {"authorization": f"Bearer {TOKEN}"}
            async with session.post(url, json={}, headers=headers) as answer:
                assert answer.status == 200
        answered = await _burst(session, gateway, sends)
        assert gateway.kills == 2
        await _healthy(session, gateway.url)
        # What the senders saw: genuine deliveries (and their duplicates) acknowledged, every
        # forged or stale one refused.
        assert set(answered["genuine"]) == {200}
        hostile = {k: v for k, v in answered.items() if k != "genuine"}
        assert {"stale", "future", "bad_signature", "wrong_secret", "tampered"} <= set(hostile)
        assert {s for statuses in hostile.values() for s in statuses} == {401}
        # The last gateway processes what the killed ones left (their leases run out first).
        waiting = {f"inbox:billing:msg_{run}_{n}" for n in owner}
        deadline = time.monotonic() + SETTLE_S
        while waiting:
            assert time.monotonic() < deadline, f"{len(waiting)} events were never applied"
            waiting = {key for key in waiting if await store.get(key) != b"done"}
            if waiting:
                await asyncio.sleep(0.2)
    applied: Counter[int] = Counter()
    log = CallEvents(store)
    for call in calls:
        for event in await log.stored(call, None):
            n = int(event.data["last"])
            assert event.data["webhook_id"] == f"msg_{run}_{n}", event.data
            assert event.say == f"Note {n}." and owner.get(n) == call
            applied[n] += 1
    assert not [n for n, times in applied.items() if times > 1], "applied twice"
    assert set(applied) == set(owner), f"lost: {sorted(set(owner) - set(applied))[:10]}"
    # no forged or stale delivery was even stored
    for send in sends:
        if send.kind != "genuine" and send.kind != "tampered":
            assert await store.get(f"inbox:billing:{send.msg_id}") is None
    unmatched = (await store.hgetall("inbox:unmatched")).keys()
    assert not [ref for ref in unmatched if f"_{run}_" in ref]


async def test_webhooks_through_two_kill_9s_apply_each_genuine_event_once_on_sqlite(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(str(tmp_path / "state.db"))
    try:
        await _chaos(f"sqlite:///{tmp_path / 'state.db'}", store, tmp_path, secrets.token_hex(4))
    finally:
        await store.close()


async def test_webhooks_through_two_kill_9s_apply_each_genuine_event_once_on_redis(
    tmp_path: Path, redis_url: str
) -> None:
    run = secrets.token_hex(4)  # ids of this run: the gateway keeps its keys under patchbay:
    store = RedisStore(redis_url)
    try:
        await _chaos(redis_url, store, tmp_path, run)
    finally:
        await store.close()
        _forget(redis_url, run)


def _forget(url: str, run: str) -> None:
    """Remove this run's keys from a Redis other runs share."""
    client: redis.Redis = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"patchbay:*{run}*", count=1000))
        for at in range(0, len(keys), 500):
            client.delete(*keys[at : at + 500])
        fields = [f for f in client.hkeys("patchbay:inbox:unmatched") if run.encode() in f]
        if fields:
            client.hdel("patchbay:inbox:unmatched", *fields)
    finally:
        client.close()
