"""What a newcomer's client needs from the gateway's door: a 401 that says how to get in, the
header `export elevenlabs` names, and one warning at start for a gateway no one may call."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from typer.testing import CliRunner

import patchbay.cli  # noqa: F401 - registers every command on the app
from patchbay.cli._app import app
from patchbay.spec import GatewayAuth

from .gateway_support import ELEVENLABS_SECRET, VAPI_SECRET, StackFactory, bearer, small_config

CHALLENGE = 'Bearer realm="patchbay"'


async def test_every_401_carries_a_bearer_challenge(stack: StackFactory) -> None:
    body = {"arguments": {"text": "x"}}
    async with stack(small_config()) as s:
        refusals = [
            ("POST", "/tools/echo", {}),
            ("POST", "/tools/echo", bearer("wrong")),
            ("POST", "/vapi", {"X-Vapi-Secret": "nope"}),
            ("POST", "/elevenlabs/echo", {"X-ElevenLabs-Secret": "nope"}),
            ("GET", "/tools", {}),
            ("GET", "/metrics", {}),
        ]
        for method, path, headers in refusals:
            async with s.session.request(method, s.url + path, json=body, headers=headers) as got:
                assert got.status == 401, (method, path)
                assert got.headers.getall("WWW-Authenticate") == [CHALLENGE], (method, path)
        async with s.session.post(s.url + "/tools/echo", json=body, headers=bearer()) as ok:
            assert ok.status == 200 and "WWW-Authenticate" not in ok.headers
        async with s.session.post(s.url + "/tools/nope", json=body, headers=bearer()) as missing:
            assert missing.status == 404 and "WWW-Authenticate" not in missing.headers
    async with (
        stack(small_config(GatewayAuth())) as closed,
        closed.session.post(closed.url + "/tools/echo", json=body) as got,
    ):
        assert got.status == 401 and got.headers["WWW-Authenticate"] == CHALLENGE


async def test_the_header_export_names_is_the_one_the_gateway_takes(
    stack: StackFactory, tmp_path: Path
) -> None:
    config = tmp_path / "patchbay.yaml"
    config.write_text("version: 1\ntools: {}\n")
    done = CliRunner().invoke(app, ["export", "elevenlabs", "-c", str(config), "--url", "http://h"])
    assert done.exit_code == 0, done.output
    assert "X-ElevenLabs-Secret" in done.stderr and "gateway.auth.elevenlabs_secret" in done.stderr
    vapi = CliRunner().invoke(app, ["export", "vapi", "-c", str(config), "--url", "http://h"])
    assert "X-Vapi-Secret" in vapi.stderr
    body = {"text": "x"}
    async with stack(small_config()) as s:
        named = {"X-ElevenLabs-Secret": ELEVENLABS_SECRET}
        async with s.session.post(s.url + "/elevenlabs/echo", json=body, headers=named) as got:
            assert got.status == 200
        named = {"X-Vapi-Secret": VAPI_SECRET}
        async with s.session.post(
            s.url + "/vapi", json={"message": {"type": "x"}}, headers=named
        ) as got:
            assert got.status == 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_with_no_way_in_says_so_once(tmp_path: Path) -> None:
    (tmp_path / "patchbay.yaml").write_text("version: 1\ntools: {}\n")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "patchbay.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        for path in ("/tools", "/mcp", "/tools/x"):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}{path}",
                data=b"{}",
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                method="GET" if path == "/tools" else "POST",
            )
            try:
                urllib.request.urlopen(request, timeout=5)
                raise AssertionError(f"{path} let an unauthenticated caller in")
            except urllib.error.HTTPError as refused:
                assert refused.code == 401, path
                assert refused.headers["WWW-Authenticate"] == CHALLENGE, path  # MCP clients too
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert stderr.count("every caller will be refused") == 1, stderr
    assert "gateway.auth opens no way in" in stderr
