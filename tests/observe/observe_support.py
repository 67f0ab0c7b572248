"""Helpers for the `observe:` tests: the billing example with an observe block, the CLI as a
process, and `patchbay serve` on a free loopback port."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = ROOT / "examples" / "billing"
# `patchbay ARGS...` as the console script runs it, without needing the script installed.
CLI = [sys.executable, "-m", "patchbay.cli"]


def write_config(directory: Path, observe: str, extra: str = "") -> Path:
    """The billing example in `directory` (with its handlers), plus an `observe:` block."""
    shutil.copy(EXAMPLE_DIR / "billing_tools.py", directory / "billing_tools.py")
    text = (EXAMPLE_DIR / "patchbay.yaml").read_text()
    path = directory / "patchbay.yaml"
    path.write_text(f"{text}\nobserve:\n{observe}\n{extra}\n")
    return path


def child_env(**values: str) -> dict[str, str]:
    """A minimal environment for a patchbay process: PATH, the venv's Python, `values`."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PATCHBAY_STATE": "memory"}
    env.update(values)
    return env


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSON-lines file, parsed."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    """One request; (status, body) whatever the status."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


@contextmanager
def serving(config: Path, env: Mapping[str, str], *args: str) -> Iterator[tuple[str, list[str]]]:
    """`patchbay serve -c CONFIG` until the block ends (then SIGTERM); (its URL, its stderr).

    The stderr list is filled once the process has exited.
    """
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "-c", str(config), "--port", str(port), *args],
        cwd=config.parent,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    stderr: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise AssertionError(f"serve did not start: {proc.communicate()[1]}") from None
                time.sleep(0.1)
        yield url, stderr
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        stderr.append(err)


class OtlpReceiver:
    """A stand-in OpenTelemetry collector on loopback: keeps every OTLP/HTTP export it is sent."""

    def __init__(self) -> None:
        # (path, headers with lower-case names, body) of every export
        self.exports: list[tuple[str, dict[str, str], bytes]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _take(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.exports.append((request.path, headers, body))
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def __aenter__(self) -> OtlpReceiver:
        app = web.Application()
        app.router.add_post("/v1/{signal}", self._take)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def span_names(self) -> list[str]:
        """The names of every span exported so far."""
        names = []
        for path, _, body in self.exports:
            if path == "/v1/traces":
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        names += [span.name for span in scope.spans]
        return names
