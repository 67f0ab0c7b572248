"""CLI start-up: each light command as a fresh subprocess, against a bare `python -c pass`.

Medians of several runs, in seconds; "over" is the command minus the bare interpreter, the
figure a person waits for beyond Python itself (the goal is under 0.3 s).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 7
CONFIG = """
version: 1
integrations:
  billing:
    base_url: http://127.0.0.1:9
    auth: {type: api_key, header: X-API-Key, secret: env:PB_BENCH_KEY}
tools:
  get_customer:
    integration: billing
    description: Fetch a customer's name, status and tier by customer id.
    parameters:
      customer_id: {type: string, pattern: "^cus_[A-Za-z0-9]+$"}
    request: {method: GET, path: "/customers/{customer_id}"}
    response: {root: data.customer, fields: {customer_name: name}}
"""
COMMANDS = {
    "--help": ["--help"],
    "--version": ["--version"],
    "validate": ["validate", "-c", "patchbay.yaml"],
    "tools": ["tools", "-c", "patchbay.yaml"],
    "docs": ["docs", "-c", "patchbay.yaml", "-o", "docs-out"],
}


def _median(argv: list[str], folder: Path) -> float:
    env = {**os.environ, "PB_BENCH_KEY": "bench-key"}
    took = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, cwd=folder, env=env, capture_output=True, check=False)
        took.append(time.perf_counter() - start)
    return statistics.median(took)


def bench_cli_start() -> list[str]:
    """One line per command: median seconds, seconds over `python -c pass`, and the ratio."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "patchbay.yaml").write_text(CONFIG)
        floor = _median([sys.executable, "-c", "pass"], folder)
        lines = [f"python -c pass       {floor:.3f} s (floor)"]
        for name, args in COMMANDS.items():
            took = _median([sys.executable, "-m", "patchbay.cli", *args], folder)
            lines.append(
                f"patchbay {name:<12} {took:.3f} s  over the floor {took - floor:.3f} s  "
                f"({took / floor:.1f}x)"
            )
        return lines
