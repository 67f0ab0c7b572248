"""The gateway benchmark: the example lookup through POST /vapi beside the same call in-process.

The billing API runs in its own process, the gateway (uvicorn, uvloop and httptools when
installed) in another, so the gateway has a core of its own on a 2-core machine; the callers
and the in-process runtime share this process. Both sides run in the same run, interleaved.

- throughput: tool calls per second with 64 callers at once, in-process `runtime.call_tool`
  against Vapi `tool-calls` messages posted to the gateway;
- overhead: what the gateway adds to one call, measured one call at a time: each gateway call's
  latency minus the median in-process latency, at p50 and p99.

The gateway is called twice over: with a minimal keep-alive HTTP/1.1 client, so the figures are
the gateway's (a platform's client runs on the platform's machines), and with aiohttp's client,
whose own cost lands on this machine's cores too.
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
_CALLS = 256
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


def _call_id(side: str, i: int) -> str:
    # A few hundred phone calls, each making many tool calls: the live calls stay bounded on
    # both sides, as they would in service, instead of piling up one per tool call.
    return f"{side}-{i % _CALLS}"


def in_process(runtime: ToolRuntime) -> Call:
    """The lookup as a tool call inside this process."""

    async def call(i: int) -> None:
        result = await runtime.call_tool(
            "lookup_customer_invoices", {"phone": "555-123-4567"}, CallContext(id=_call_id("b", i))
        )
        if not result.ok:
            raise RuntimeError(result.to_json())

    return call


def _vapi_body() -> tuple[bytes, bytes]:
    """A Vapi `tool-calls` message for the lookup, split where the call id goes."""
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
    return head, tail


def _check(status: int, data: bytes) -> None:
    if status != 200 or b'"result"' not in data:
        raise RuntimeError(f"{status} {data.decode(errors='replace')}")


def through_vapi(session: aiohttp.ClientSession, url: str) -> Call:
    """The lookup as Vapi sends it, posted with aiohttp's client."""
    headers = {"Content-Type": "application/json", "X-Vapi-Secret": SECRET}
    head, tail = _vapi_body()

    async def call(i: int) -> None:
        body = head + _call_id("g", i).encode() + tail
        async with session.post(url + "/vapi", data=body, headers=headers) as answer:
            _check(answer.status, await answer.read())

    return call


class _Connection:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        self.writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status_line, _, rest = (await self.reader.readuntil(b"\r\n\r\n")).partition(b"\r\n")
        length = 0
        for line in rest.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)


async def through_vapi_raw(url: str, connections: int) -> tuple[Call, Callable[[], None]]:
    """The lookup as Vapi sends it, on plain keep-alive connections (one per caller).

    A platform's HTTP client runs on the platform's machines; this one costs the bench's core
    as little as a client can, so what is measured is the gateway.
    """
    host, port = url.removeprefix("http://").split(":")
    pool = [
        _Connection(*await asyncio.open_connection(host, int(port))) for _ in range(connections)
    ]
    head, tail = _vapi_body()
    request = (
        f"POST /vapi HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"X-Vapi-Secret: {SECRET}\r\nContent-Length: "
    ).encode()

    async def call(i: int) -> None:
        conn = pool.pop()
        try:
            _check(*await conn.post(request, head + _call_id("r", i).encode() + tail))
        finally:
            pool.append(conn)

    def close() -> None:
        for conn in pool:
            conn.writer.close()

    return call, close


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


def _figures(
    seq_l: list[float], seq_g: list[float], thr_l: list[float], thr_g: list[float],
    load_g: list[float], prefix: str,
) -> dict[str, float]:  # fmt: skip
    base = statistics.median(seq_l)
    overhead = [t - base for t in seq_g]
    return {
        f"{prefix}_per_s": statistics.median(thr_g),
        # Each round's sides ran back to back: the median of per-round ratios is the figure
        # least moved by whatever else the machine is doing.
        f"{prefix}_ratio": statistics.median(g / x for g, x in zip(thr_g, thr_l, strict=True)),
        f"{prefix}_seq_ms": statistics.median(seq_g),
        f"{prefix}_overhead_p50_ms": _pct(overhead, 0.50),
        f"{prefix}_overhead_p99_ms": _pct(overhead, 0.99),
        f"{prefix}_load_p50_ms": _pct(load_g, 0.50),
        f"{prefix}_load_p99_ms": _pct(load_g, 0.99),
    }


async def bench_gateway(
    rounds: int = 5,
    total: int = 1200,
    in_flight: int = 64,
    seq_n: int = 200,
    loop: str = "auto",
    http: str = "auto",
) -> dict[str, float]:
    """Run the three sides interleaved over several rounds; print and return the figures.

    Sides: in-process; through the gateway with a minimal keep-alive client (`gateway_*`, what
    the gateway itself costs); through the gateway with aiohttp's client (`aiohttp_*`, the
    client's own cost on the bench's core included).
    """
    async with BillingServer() as billing:
        os.environ["BILLING_API_KEY"] = billing.api_key
        config = load_config(EXAMPLE, env={**os.environ, "BILLING_URL": billing.url})
        connector = aiohttp.TCPConnector(limit=in_flight)
        async with (
            GatewayProcess(billing, loop, http) as gateway,
            aiohttp.ClientSession(connector=connector) as session,
            ToolRuntime(config) as runtime,
        ):
            raw, close = await through_vapi_raw(gateway.url, in_flight)
            sides = {
                "inproc": in_process(runtime),
                "gateway": raw,
                "aiohttp": through_vapi(session, gateway.url),
            }
            n = 0
            for side in sides.values():  # warm connections, imports and caches
                await sequential(side, 100, n)
                await concurrent(side, 500, in_flight, n)
                n += 1000
            seq: dict[str, list[float]] = {k: [] for k in sides}
            thr: dict[str, list[float]] = {k: [] for k in sides}
            load: dict[str, list[float]] = {k: [] for k in sides}
            for _ in range(rounds):
                for name, side in sides.items():
                    seq[name] += await sequential(side, seq_n, n)
                    n += seq_n
                for name, side in sides.items():
                    rate, times = await concurrent(side, total, in_flight, n)
                    thr[name].append(rate)
                    load[name] += times
                    n += total
            close()
    out = {
        "inproc_per_s": statistics.median(thr["inproc"]),
        "inproc_seq_ms": statistics.median(seq["inproc"]),
        "inproc_load_p50_ms": _pct(load["inproc"], 0.50),
        "inproc_load_p99_ms": _pct(load["inproc"], 0.99),
    }
    for name in ("gateway", "aiohttp"):
        out |= _figures(seq["inproc"], seq[name], thr["inproc"], thr[name], load[name], name)
    for line in report_gateway(out, in_flight):
        print(line, flush=True)
    return out


def report_gateway(r: dict[str, float], in_flight: int = 64) -> list[str]:
    """Lines for the bench report, with the gateway issue's targets."""
    lines = [
        f"in-process lookup: {r['inproc_per_s']:.0f}/s with {in_flight} in flight, "
        f"{r['inproc_seq_ms']:.3f} ms one at a time (median)"
    ]
    for name, client in (("gateway", "lean keep-alive client"), ("aiohttp", "aiohttp client")):
        lines += [
            f"POST /vapi, {client}: {r[f'{name}_per_s']:.0f}/s, ratio "
            f"{r[f'{name}_ratio']:.3f}x of in-process (target >= 0.6x); overhead one call at a "
            f"time p50 {r[f'{name}_overhead_p50_ms']:.3f} ms, p99 "
            f"{r[f'{name}_overhead_p99_ms']:.3f} ms (target p99 < 5 ms); under load p50 "
            f"{r[f'{name}_load_p50_ms']:.1f} ms, p99 {r[f'{name}_load_p99_ms']:.1f} ms"
        ]
    lines.append(
        f"in-process under load: p50 {r['inproc_load_p50_ms']:.1f} ms, "
        f"p99 {r['inproc_load_p99_ms']:.1f} ms"
    )
    return lines


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
