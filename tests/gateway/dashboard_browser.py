"""Headless Chromium driven over the DevTools protocol, for tests of pages the gateway serves.

Written against the protocol directly (a websocket from aiohttp, which patchbay already has):
Playwright's Python package brings a Node driver and expects browsers it downloads itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import signal
from pathlib import Path
from typing import Any

import aiohttp

# Offline on purpose: no network beyond loopback, no sync, no component updates, no first run.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-port=0",
)
STARTUP_S = 60.0  # bounds for a broken browser, not timing assertions
WAIT_S = 30.0


class Page:
    """One tab: navigation answered with Basic credentials, script evaluation, screenshots."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._user = self._password = ""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader = asyncio.create_task(self._read())

    def _later(self, method: str, params: dict[str, Any]) -> None:
        task = asyncio.create_task(self.send(method, params))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self) -> None:
        async for message in self._ws:
            data = json.loads(message.data)
            if "id" in data:
                future = self._waiting.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            elif data.get("method") == "Fetch.requestPaused":
                params = {"requestId": data["params"]["requestId"]}
                self._later("Fetch.continueRequest", params)
            elif data.get("method") == "Fetch.authRequired":
                answer = {
                    "response": "ProvideCredentials",
                    "username": self._user,
                    "password": self._password,
                }
                params = {"requestId": data["params"]["requestId"], "authChallengeResponse": answer}
                self._later("Fetch.continueWithAuth", params)

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call a protocol method; its result (an error answer raises)."""
        number = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[number] = future
        await self._ws.send_str(
            json.dumps({"id": number, "method": method, "params": params or {}})
        )
        answer = await asyncio.wait_for(future, WAIT_S)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def open(self, url: str, user: str, password: str) -> None:
        """Navigate to `url`, answering an HTTP authentication challenge with these."""
        self._user, self._password = user, password
        await self.send(
            "Fetch.enable", {"handleAuthRequests": True, "patterns": [{"urlPattern": "*"}]}
        )
        await self.send("Page.enable")
        await self.send("Page.navigate", {"url": url})

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        found = await self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}
        )
        if "exceptionDetails" in found:
            raise RuntimeError(f"{expression}: {found['exceptionDetails']}")
        return found["result"].get("value")

    async def wait_for(self, expression: str) -> Any:
        """Poll until `expression` is truthy in the page; its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while True:
            with contextlib.suppress(RuntimeError):
                value = await self.evaluate(expression)
                if value:
                    return value
            if loop.time() > deadline:
                status = await self.evaluate("document.body && document.body.innerText")
                raise AssertionError(f"never true: {expression}\npage: {status!r}"[:3000])
            await asyncio.sleep(0.1)

    async def text(self, selector: str) -> str:
        """The rendered text of the first element `selector` finds."""
        value = await self.evaluate(f"document.querySelector({json.dumps(selector)}).innerText")
        return str(value)

    async def screenshot(self, width: int, height: int) -> bytes:
        """A PNG of the page at this size."""
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        await self.send("Emulation.setDeviceMetricsOverride", metrics)
        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        return base64.b64decode(shot["data"])

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()


class Browser:
    """`async with Browser(path, profile) as b: page = await b.open(url, user=, password=)`."""

    def __init__(self, executable: str, profile: Path) -> None:
        self.executable = executable
        self.profile = profile
        self._proc: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self._pages: list[Page] = []

    async def __aenter__(self) -> Browser:
        self.profile.mkdir(parents=True, exist_ok=True)
        self._proc = await asyncio.create_subprocess_exec(
            self.executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self._session = aiohttp.ClientSession()
        return self

    async def _debug_port(self) -> int:
        marker = self.profile / "DevToolsActivePort"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_S
        while not marker.is_file() or not marker.read_text().strip():
            assert self._proc is not None
            if self._proc.returncode is not None or loop.time() > deadline:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            await asyncio.sleep(0.05)
        return int(marker.read_text().split()[0])

    async def open(self, url: str, *, user: str, password: str) -> Page:
        """A tab at `url`, HTTP authentication answered with `user` and `password`."""
        assert self._session is not None
        port = await self._debug_port()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as answer:
            targets = await answer.json()
        target = next(t for t in targets if t.get("type") == "page")
        ws = await self._session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        self._pages.append(page)
        await page.open(url, user, password)
        return page

    async def __aexit__(self, *exc: object) -> None:
        for page in self._pages:
            await page.close()
        if self._session is not None:
            await self._session.close()
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)
