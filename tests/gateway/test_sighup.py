"""SIGHUP on a real `patchbay serve`: the config and its secrets are re-read and swapped in for
new requests, a call in flight finishes on the old ones, and a broken config keeps serving."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from patchbay.gateway import create_app
from patchbay.runtime import ToolRuntime
from patchbay.spec import load_config_text

from .gateway_support import running

OLD_TOKEN = "tok-old-3b9e1f27c4"
NEW_TOKEN = "tok-new-8d2a6c05e1"
UPSTREAM_KEY = "up-key-41f0c9a7b3"

CONFIG = """
version: 1
integrations:
  billing:
    base_url: {upstream}
    auth: {{type: api_key, header: X-API-Key, secret: file:upstream.txt}}
    timeout_s: 20
    retry: {{attempts: 1}}
gateway:
  auth: {{bearer: {bearer}}}
tools:
  get_customer:
    integration: billing
    description: Fetch a customer by id.
    parameters:
      customer_id: {{type: string}}
    request: {{method: GET, path: "/customers/{{customer_id}}"}}
    response: {{root: data.customer, fields: {{customer_name: name}}}}
    budget_s: 25
{more}"""

MORE = """  get_invoice:
    integration: billing
    description: Fetch an invoice by id.
    parameters:
      invoice_id: {type: string}
    request: {method: GET, path: "/customers/{invoice_id}"}
"""


class Upstream:
    """A customer endpoint that holds `/customers/hold` until the test releases it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.held = asyncio.Event()

    async def customer(self, request: web.Request) -> web.Response:
        if request.headers.get("X-API-Key") != UPSTREAM_KEY:
            return web.json_response({"error": "bad key"}, status=401)
        if request.match_info["cid"] == "hold":
            self.held.set()
            await self.release.wait()
        data = {"customer": {"id": request.match_info["cid"], "name": "Jamie Patel"}}
        return web.json_response({"status": 200, "data": data})


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, str]]:
    up = Upstream()
    app = web.Application()
    app.router.add_get("/customers/{cid}", up.customer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield up, f"http://127.0.0.1:{port}"
    up.release.set()
    await runner.cleanup()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "old.txt").write_text(OLD_TOKEN + "\n")
    (tmp_path / "new.txt").write_text(NEW_TOKEN + "\n")
    (tmp_path / "upstream.txt").write_text(UPSTREAM_KEY)
    return tmp_path


@pytest.fixture
def serve(folder: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = _free_port()
    log = folder / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "patchbay.cli", "serve", "-c", str(folder / "patchbay.yaml"),
             "--port", str(port), "--graceful", "10"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    try:
        yield proc, f"http://127.0.0.1:{port}", log
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def _wait_for(check: object, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if await check():  # type: ignore[operator]
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what}; gateway log:\n{log.read_text()}")  # noqa: ASYNC240
        await asyncio.sleep(0.05)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_sighup_reloads_config_and_secrets_without_dropping_a_call(
    folder: Path,
    upstream: tuple[Upstream, str],
    serve: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    up, up_url = upstream
    config = folder / "patchbay.yaml"
    config.write_text(CONFIG.format(upstream=up_url, bearer="file:old.txt", more=""))
    proc, url, log = serve
    async with aiohttp.ClientSession() as http:

        async def tools(token: str) -> set[str] | None:
            try:
                async with http.get(url + "/tools", headers=_auth(token)) as answer:
                    if answer.status != 200:
                        return None
                    body = await answer.text()
            except aiohttp.ClientConnectionError:
                return None
            return {name for name in ("get_customer", "get_invoice") if name in body}

        async def started() -> bool:
            return await tools(OLD_TOKEN) is not None

        await _wait_for(started, "the gateway did not start", proc, log)
        assert await tools(NEW_TOKEN) is None  # not listed yet

        # A call that stays in flight across the reload: the upstream holds it.
        in_flight = asyncio.ensure_future(
            http.post(
                url + "/tools/get_customer",
                json={"arguments": {"customer_id": "hold"}, "call": {"id": "c-hold"}},
                headers=_auth(OLD_TOKEN),
            )
        )
        await asyncio.wait_for(up.held.wait(), 20)

        # Rotation: both tokens listed, a new tool; then SIGHUP.
        config.write_text(
            CONFIG.format(upstream=up_url, bearer="[file:old.txt, file:new.txt]", more=MORE)
        )
        proc.send_signal(signal.SIGHUP)

        async def reloaded() -> bool:
            return await tools(NEW_TOKEN) == {"get_customer", "get_invoice"}

        await _wait_for(reloaded, "the new config was not served", proc, log)
        assert await tools(OLD_TOKEN) == {"get_customer", "get_invoice"}  # both during rotation
        assert not in_flight.done()

        up.release.set()
        answer = await asyncio.wait_for(in_flight, 20)
        body = await answer.json()
        answer.release()
        assert answer.status == 200 and body["ok"] is True, body
        assert body["result"] == {"customer_name": "Jamie Patel"}

        # The new config serves tool calls (its runtime re-read the upstream key).
        async with http.post(
            url + "/tools/get_invoice",
            json={"arguments": {"invoice_id": "cus_2"}, "call": {"id": "c-2"}},
            headers=_auth(NEW_TOKEN),
        ) as answer:
            assert answer.status == 200 and (await answer.json())["ok"] is True

        # A broken config, then one whose secret cannot be read: both keep the running one.
        config.write_text("version: 1\ntools: {get_customer: {integration: nowhere}}\n")
        proc.send_signal(signal.SIGHUP)

        async def refused_once() -> bool:
            return log.read_text().count("reload failed") == 1

        await _wait_for(refused_once, "no reload failure was logged", proc, log)
        config.write_text(CONFIG.format(upstream=up_url, bearer="file:missing.txt", more=""))
        proc.send_signal(signal.SIGHUP)

        async def refused_twice() -> bool:
            return log.read_text().count("reload failed") == 2

        await _wait_for(refused_twice, "no second reload failure was logged", proc, log)
        # Valid and resolvable, but the new gateway refuses to start: one token for two callers.
        shared = "file:new.txt, tenants: {acme: {bearer: file:new.txt}}"
        config.write_text(
            CONFIG.format(
                upstream=up_url + "\n    unknown_tenants: default", bearer=shared, more=""
            )
        )
        proc.send_signal(signal.SIGHUP)

        async def refused_thrice() -> bool:
            return log.read_text().count("reload failed") == 3

        await _wait_for(refused_thrice, "no third reload failure was logged", proc, log)
        assert await tools(NEW_TOKEN) == {"get_customer", "get_invoice"}
        assert await tools(OLD_TOKEN) == {"get_customer", "get_invoice"}

        # Rotation finished: the old token leaves the list and stops working.
        config.write_text(CONFIG.format(upstream=up_url, bearer="[file:new.txt]", more=""))
        proc.send_signal(signal.SIGHUP)

        async def old_refused() -> bool:
            return await tools(OLD_TOKEN) is None

        await _wait_for(old_refused, "the removed token still works", proc, log)
        assert await tools(NEW_TOKEN) == {"get_customer"}

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    text = log.read_text()
    reloads = [line for line in text.splitlines() if "config reloaded" in line]
    assert len(reloads) == 2, text
    assert "tools +get_invoice" in reloads[0] and "gateway.auth changed" in reloads[0]
    assert reloads[1].endswith("secrets re-read: tools -get_invoice; gateway.auth changed")
    assert "missing.txt" in text  # the failing reference is named
    assert "each tenant needs credentials of its own" in text
    for value in (OLD_TOKEN, NEW_TOKEN, UPSTREAM_KEY):
        assert value not in text


async def test_gateway_credentials_are_re_read_when_their_ttl_passes(tmp_path: Path) -> None:
    token = tmp_path / "token.txt"
    token.write_text(OLD_TOKEN)
    config = load_config_text(
        "version: 1\nsecrets: {ttl_s: 1}\ngateway:\n  auth: {bearer: file:token.txt}\n",
        base_dir=str(tmp_path),
    )
    async with (
        ToolRuntime(config) as runtime,
        running(create_app(runtime, config)) as url,
        aiohttp.ClientSession() as http,
    ):

        async def status(value: str) -> int:
            async with http.get(url + "/tools", headers=_auth(value)) as answer:
                return answer.status

        assert await status(OLD_TOKEN) == 200
        token.write_text(NEW_TOKEN)  # rotated in the file the reference names
        assert await status(NEW_TOKEN) == 401  # the TTL has not passed
        await asyncio.sleep(1.1)
        deadline = time.monotonic() + 10
        # past the TTL a request starts the re-read; the new token works once it is done
        while await status(NEW_TOKEN) != 200:
            assert time.monotonic() < deadline, "the rotated token was never accepted"
            await asyncio.sleep(0.05)
        assert await status(OLD_TOKEN) == 401
