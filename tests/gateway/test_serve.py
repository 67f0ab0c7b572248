"""`patchbay serve`: uvicorn in its own process; SIGTERM lets the calls in flight finish."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from typer.testing import CliRunner

import patchbay.cli._serve  # noqa: F401 - registers `serve` on the app
from patchbay.cli._app import app

from .gateway_support import EXAMPLE, HERE, SMALL_CONFIG

SERVER = f"""
import sys
from patchbay.gateway import run
from patchbay.spec import GatewayAuth, GatewaySpec, load_config_text
config = load_config_text({SMALL_CONFIG!r}, base_dir={str(HERE)!r})
config = config.model_copy(update={{"gateway": GatewaySpec(auth=GatewayAuth(open=True))}})
run(config, fd=int(sys.argv[1]), log_level="warning", graceful_s=10)
"""


@pytest.fixture
def gateway_process() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(sock.fileno())],
        pass_fds=(sock.fileno(),),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    sock.close()  # the child's copy is the only listener now
    try:
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


async def _wait_healthy(session: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            async with session.get(url + "/healthz") as answer:
                if answer.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("gateway did not start")
        await asyncio.sleep(0.05)


async def test_sigterm_finishes_calls_in_flight(
    gateway_process: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, url = gateway_process
    async with aiohttp.ClientSession() as session:
        await _wait_healthy(session, url)

        async def slow_call() -> tuple[int, dict[str, object]]:
            body = {"arguments": {"seconds": 1.5}, "call": {"id": "drain-1"}}
            async with session.post(url + "/tools/slow", json=body) as answer:
                return answer.status, json.loads(await answer.read())

        in_flight = asyncio.create_task(slow_call())
        await asyncio.sleep(0.5)  # the request is read and running
        os.kill(proc.pid, signal.SIGTERM)
        await asyncio.sleep(0.3)
        # Draining: no new connections are taken.
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as fresh, fresh.get(url + "/healthz"):
                pass
        status, data = await in_flight
    assert status == 200
    assert data["ok"] is True and data["result"] == {"slept": 1.5, "call_id": "drain-1"}
    code = await asyncio.to_thread(proc.wait, 15)
    assert code in (0, -signal.SIGTERM)


def test_serve_stops_with_one_line_when_a_gateway_secret_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "patchbay.yaml"
    config.write_text(EXAMPLE.read_text() + "gateway:\n  auth: {bearer: env:PB_UNSET_TOKEN}\n")
    (tmp_path / "billing_tools.py").write_text((EXAMPLE.parent / "billing_tools.py").read_text())
    monkeypatch.delenv("PB_UNSET_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["serve", "-c", str(config), "--port", "1"])
    assert result.exit_code == 2
    assert "PB_UNSET_TOKEN" in result.output and "Traceback" not in result.output


async def test_served_gateway_speaks_mcp_at_slash_mcp(
    gateway_process: tuple[subprocess.Popen[bytes], str],
) -> None:
    _, url = gateway_process
    async with aiohttp.ClientSession() as session:
        await _wait_healthy(session, url)
    async with (
        streamable_http_client(url + "/mcp") as (read, write),
        ClientSession(read, write) as mcp,
    ):
        await mcp.initialize()
        listed = await mcp.list_tools()
        assert "slow" in {t.name for t in listed.tools}
        result = await mcp.call_tool("slow", {"seconds": 0.01}, meta={"patchbay/call_id": "m-1"})
    assert result.is_error is False
    assert result.structured_content == {"ok": True, "result": {"slept": 0.01, "call_id": "m-1"}}
