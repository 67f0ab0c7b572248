"""What observation costs per tool call: the audit trail (and every file sink) on against off.

The example lookup (two GETs against the example billing API in its own process) runs one call
after another on runtimes built from the same config, one without `observe` and one with
`observe.audit` (HMAC-chained lines, as in production), interleaved over several rounds in the
same run; the figure is the difference of the medians, in wall time and in this process's CPU.
Events flow on every side (to a sink that drops them), so the difference is the sinks' own.
The audit sink alone (one sealed line written, no HTTP around it) is timed too.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from core import EXAMPLE, sequential, through_patchbay

from patchbay import ToolRuntime, load_config
from patchbay.observe import AuditSink, Event
from patchbay.spec import Config
from patchbay.spec._ops import AuditSpec, JsonLinesSpec, ObserveSpec, PrometheusSpec
from patchbay.testing import BillingServer

_KEY_ENV = "PATCHBAY_BENCH_AUDIT_KEY"


class _Dropped:
    """A sink that keeps nothing."""

    def emit(self, event: Event) -> None:
        pass


def _observed(config: Config, observe: ObserveSpec) -> Config:
    return config.model_copy(update={"observe": observe})


def bench_audit_line(directory: Path, n: int = 20_000) -> dict[str, float]:
    """µs to write one audit line with the sink alone, with and without an HMAC key."""
    event = Event(
        kind="tool_call", tool="create_payment", call_id="c-1", integration="billing",
        tenant="acme", status=201, latency_ms=12.5, attempt=1, outcome="ok",
    )  # fmt: skip
    who = {"caller_id": "operator", "surface": "api"}
    fields = {"invoice_id": "inv_1001", "amount": 24700}
    out = {}
    for name, key in (("plain", None), ("hmac", b"k" * 32)):
        sink = AuditSink(directory / f"line-{name}.jsonl", key=key)
        t0 = time.perf_counter()
        for _ in range(n):
            sink.record(event, who=who, operation="POST /payments", fields=fields)
        out[f"line_{name}_us"] = (time.perf_counter() - t0) * 1e6 / n
        sink.close()
    return out


async def bench_observe(rounds: int = 9, n: int = 200) -> dict[str, float]:
    """Per-call wall and CPU time of the lookup with no observe block, the audit trail, and
    every file sink (JSON lines, audit, Prometheus with a metrics file) on."""
    os.environ[_KEY_ENV] = "bench-audit-key-0123456789abcdef"
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        out = bench_audit_line(directory)
        async with BillingServer() as server:
            env = {**os.environ, "BILLING_URL": server.url, "BILLING_API_KEY": server.api_key}
            os.environ["BILLING_API_KEY"] = server.api_key
            base = load_config(EXAMPLE, env=env)
            audit = AuditSpec(path=str(directory / "audit.jsonl"), key=f"env:{_KEY_ENV}")
            every = ObserveSpec(
                audit=AuditSpec(path=str(directory / "all-audit.jsonl"), key=f"env:{_KEY_ENV}"),
                jsonl=JsonLinesSpec(path=str(directory / "events.jsonl")),
                prometheus=PrometheusSpec(path=str(directory / "metrics.prom")),
            )
            configs = {
                "off": base,
                "audit": _observed(base, ObserveSpec(audit=audit)),
                "every": _observed(base, every),
            }
            figures: dict[str, list[float]] = {}
            # Every side has events flowing to a sink that drops them, as a production runtime
            # always has one (the default logs events): the difference is the sinks' own cost.
            runtimes = {side: ToolRuntime(cfg, sinks=[_Dropped()]) for side, cfg in configs.items()}
            try:
                lookups = {side: through_patchbay(rt) for side, rt in runtimes.items()}
                for lookup in lookups.values():
                    await sequential(lookup, 50)  # warm connections and caches
                for _ in range(rounds):
                    for side, lookup in lookups.items():
                        ms, cpu_us = await sequential(lookup, n)
                        figures.setdefault(f"{side}_us", []).append(ms * 1000)
                        figures.setdefault(f"{side}_cpu_us", []).append(cpu_us)
            finally:
                for rt in runtimes.values():
                    await rt.close()
    out.update({name: statistics.median(values) for name, values in figures.items()})
    return out


def report_observe(r: dict[str, float]) -> list[str]:
    """Lines for the bench report."""
    lines = [
        f"audit sink alone: {r['line_hmac_us']:.1f} µs per line with an HMAC key, "
        f"{r['line_plain_us']:.1f} µs without",
        f"lookup, sequential, no observe block: median {r['off_us']:.0f} µs per call, "
        f"CPU {r['off_cpu_us']:.0f} µs",
    ]
    for side, label in (("audit", "audit on"), ("every", "jsonl + audit + prometheus file")):
        lines.append(
            f"lookup with {label}: median {r[f'{side}_us']:.0f} µs per call "
            f"({r[f'{side}_us'] - r['off_us']:+.0f} µs, "
            f"{r[f'{side}_us'] / r['off_us']:.3f}x), CPU {r[f'{side}_cpu_us']:.0f} µs "
            f"({r[f'{side}_cpu_us'] - r['off_cpu_us']:+.0f} µs per call)"
        )
    return lines
