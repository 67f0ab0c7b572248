"""The gateway benchmark: the example lookup through POST /vapi beside the same call in-process.

The billing API runs in its own process, the gateway (uvicorn, uvloop and httptools when
installed) in another, so the gateway has a core of its own on a 2-core machine; the callers
and the in-process runtime share this process. Both sides run in the same run, interleaved.

- throughput: tool calls per second with 64 callers at once, in-process `runtime.call_tool`
  against Vapi `tool-calls` messages posted to the gateway;
- overhead: what the gateway adds to one call, measured one call at a time: each gateway call's
  latency minus the median in-process latency, at p50 and p99.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from patchbay import CallContext, ToolRuntime, load_config
from patchbay.testing import BillingServer

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "billing", "patchbay.yaml")
SECRET = "bench-gateway-secret"
Call = Callable[[int], Awaitable[None]]

_GATEWAY = """
import sys
from patchbay.gateway import run
from patchbay.spec import GatewayAuth, GatewaySpec, load_config
config = load_config(sys.argv[2])
auth = GatewayAuth(vapi_secret="env:BENCH_GATEWAY_SECRET")
config = config.model_copy(update={"gateway": GatewaySpec(auth=auth)})
run(config, fd=int(sys.argv[1]), log_level="warning", loop=sys.argv[3], http=sys.argv[4])
"""


class GatewayProcess:
    """`patchbay.gateway.run` in a subprocess, on a socket this process bound."""

    def __init__(self, billing: BillingServer, loop: str = "auto", http: str = "auto") -> None:
        self.billing = billing
        self.loop = loop
        self.http = http
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        env = {
            **os.environ,
            "BILLING_URL": self.billing.url,
            "BILLING_API_KEY": self.billing.api_key,
            "BENCH_GATEWAY_SECRET": SECRET,
        }
        argv = [sys.executable, "-c", _GATEWAY, str(sock.fileno()), EXAMPLE, self.loop, self.http]
        proc = subprocess.Popen(argv, pass_fds=(sock.fileno(),), env=env)
        sock.close()  # the child's copy is the only listener now
        return proc

    async def __aenter__(self) -> GatewayProcess:
        self._proc = self._spawn()
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(self.url + "/healthz") as answer:
                        if answer.status == 200:
                            return self
                except aiohttp.ClientConnectionError:
                    pass
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the gateway did not start")
                await asyncio.sleep(0.05)

    async def __aexit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def in_process(runtime: ToolRuntime) -> Call:
    """The lookup as a tool call inside this process."""

    async def call(i: int) -> None:
        result = await runtime.call_tool(
            "lookup_customer_invoices", {"phone": "555-123-4567"}, CallContext(id=f"b-{i}")
        )
        if not result.ok:
            raise RuntimeError(result.to_json())

    return call


def through_vapi(session: aiohttp.ClientSession, url: str) -> Call:
    """The lookup as Vapi sends it: a `tool-calls` message posted to the gateway."""
    headers = {"Content-Type": "application/json", "X-Vapi-Secret": SECRET}
    message = {
        "message": {
            "type": "tool-calls",
            "call": {"id": "CALL_ID", "customer": {"number": "+15551234567"}},
            "toolCallList": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": "lookup_customer_invoices",
                        "arguments": json.dumps({"phone": "555-123-4567"}),
                    },
                }
            ],
        }
    }
    head, tail = json.dumps(message).encode().split(b"CALL_ID")

    async def call(i: int) -> None:
        body = head + f"g-{i}".encode() + tail
        async with session.post(url + "/vapi", data=body, headers=headers) as answer:
            data = await answer.read()
        if answer.status != 200 or b'"result"' not in data:
            raise RuntimeError(data.decode())

    return call


async def sequential(call: Call, n: int, start: int) -> list[float]:
    """Milliseconds of n calls one after another."""
    times = []
    for i in range(start, start + n):
        t0 = time.perf_counter()
        await call(i)
        times.append((time.perf_counter() - t0) * 1000)
    return times


async def concurrent(
    call: Call, total: int, in_flight: int, start: int
) -> tuple[float, list[float]]:
    """Calls per second with `in_flight` callers, and each call's milliseconds."""
    sem = asyncio.Semaphore(in_flight)
    times: list[float] = []

    async def one(i: int) -> None:
        async with sem:
            t0 = time.perf_counter()
            await call(i)
            times.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(start, start + total)))
    return total / (time.perf_counter() - t0), times


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench_gateway(
    rounds: int = 3,
    total: int = 2000,
    in_flight: int = 64,
    seq_n: int = 300,
    loop: str = "auto",
    http: str = "auto",
) -> dict[str, float]:
    """Run both sides interleaved over several rounds; print and return medians and ratios."""
    async with BillingServer() as billing:
        os.environ["BILLING_API_KEY"] = billing.api_key
        config = load_config(EXAMPLE, env={**os.environ, "BILLING_URL": billing.url})
        connector = aiohttp.TCPConnector(limit=in_flight)
        async with (
            GatewayProcess(billing, loop, http) as gateway,
            aiohttp.ClientSession(connector=connector) as session,
            ToolRuntime(config) as runtime,
        ):
            local, remote = in_process(runtime), through_vapi(session, gateway.url)
            n = 0
            for side in (local, remote):  # warm connections, imports and caches
                await sequential(side, 100, n)
                await concurrent(side, 500, in_flight, n)
                n += 1000
            seq_l, seq_g, thr_l, thr_g, load_l, load_g = [], [], [], [], [], []
            for _ in range(rounds):
                seq_l += await sequential(local, seq_n, n)
                seq_g += await sequential(remote, seq_n, n)
                n += seq_n
                rate, times = await concurrent(local, total, in_flight, n)
                thr_l.append(rate)
                load_l += times
                rate, times = await concurrent(remote, total, in_flight, n)
                thr_g.append(rate)
                load_g += times
                n += total
    base = statistics.median(seq_l)
    overhead = [t - base for t in seq_g]
    out = {
        "inproc_per_s": statistics.median(thr_l),
        "gateway_per_s": statistics.median(thr_g),
        "inproc_seq_ms": base,
        "gateway_seq_ms": statistics.median(seq_g),
        "overhead_p50_ms": _pct(overhead, 0.50),
        "overhead_p99_ms": _pct(overhead, 0.99),
        "inproc_load_p50_ms": _pct(load_l, 0.50),
        "inproc_load_p99_ms": _pct(load_l, 0.99),
        "gateway_load_p50_ms": _pct(load_g, 0.50),
        "gateway_load_p99_ms": _pct(load_g, 0.99),
    }
    out["ratio"] = out["gateway_per_s"] / out["inproc_per_s"]
    for line in report_gateway(out, in_flight):
        print(line, flush=True)
    return out


def report_gateway(r: dict[str, float], in_flight: int = 64) -> list[str]:
    """Lines for the bench report, with the gateway issue's targets."""
    return [
        f"lookup {in_flight} in flight: through POST /vapi {r['gateway_per_s']:.0f}/s, "
        f"in-process {r['inproc_per_s']:.0f}/s, ratio {r['ratio']:.3f}x (target >= 0.6x)",
        f"gateway overhead, one call at a time: p50 {r['overhead_p50_ms']:.3f} ms, "
        f"p99 {r['overhead_p99_ms']:.3f} ms (target p99 < 5 ms; in-process median "
        f"{r['inproc_seq_ms']:.3f} ms, through the gateway {r['gateway_seq_ms']:.3f} ms)",
        f"latency under load ({in_flight} in flight): gateway p50 "
        f"{r['gateway_load_p50_ms']:.1f} ms / p99 {r['gateway_load_p99_ms']:.1f} ms, in-process "
        f"p50 {r['inproc_load_p50_ms']:.1f} ms / p99 {r['inproc_load_p99_ms']:.1f} ms",
    ]


def main(argv: list[str] | None = None) -> None:
    """`python bench/gateway.py [loop] [http]`: the gateway bench alone."""
    args = sys.argv[1:] if argv is None else argv
    kw: dict[str, Any] = {}
    if args:
        kw["loop"] = args[0]
    if len(args) > 1:
        kw["http"] = args[1]
    asyncio.run(bench_gateway(**kw))


if __name__ == "__main__":
    main()
