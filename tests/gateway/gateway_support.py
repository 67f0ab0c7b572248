"""Gateway test helpers: configs, secrets, the gateway on a loopback port, a client."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn

from patchbay.observe import MemorySink
from patchbay.runtime import ToolRuntime
from patchbay.spec import Config, GatewayAuth, GatewaySpec, load_config, load_config_text

HERE = Path(__file__).parent
REPO = HERE.parents[1]
EXAMPLE = REPO / "examples" / "billing" / "patchbay.yaml"
FIXTURES = HERE / "fixtures"

TOKEN = "tok-gateway-7f3a9c"  # bearer for any client
VAPI_SECRET = "vapi-secret-51d2"
RETELL_KEY = "key_retell_0a9b8c7d"
ELEVENLABS_SECRET = "el-secret-99e1"
CALLER = "+15551234567"

SMALL_CONFIG = """
version: 1
integrations:
  local: {base_url: "http://127.0.0.1:9", tenants: {acme: {}}}
tools:
  echo:
    integration: local
    description: Repeat the text.
    parameters:
      text: {type: string}
    handler: gateway_tools:echo
  slow:
    integration: local
    description: Take a while.
    parameters:
      seconds: {type: number, minimum: 0, maximum: 5}
    handler: gateway_tools:slow
  broken:
    integration: local
    description: Always fails.
    handler: gateway_tools:broken
    say: {failed: "Sorry, that system is down right now."}
"""


def fixture(name: str) -> dict[str, Any]:
    """A platform payload from tests/gateway/fixtures."""
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def full_auth() -> GatewayAuth:
    """Every way in configured, from environment references."""
    return GatewayAuth(
        bearer="env:PB_TEST_TOKEN",
        vapi_secret="env:PB_TEST_VAPI",
        retell_api_key="env:PB_TEST_RETELL",
        elevenlabs_secret="env:PB_TEST_ELEVENLABS",
    )


def with_auth(config: Config, auth: GatewayAuth, **gateway: Any) -> Config:
    """`config` with another gateway section."""
    return config.model_copy(update={"gateway": GatewaySpec(auth=auth, **gateway)})


def example_config(billing_url: str, auth: GatewayAuth | None = None, **gateway: Any) -> Config:
    """The billing example, against `billing_url`, with a gateway section."""
    cfg = load_config(str(EXAMPLE), env={"BILLING_URL": billing_url})
    return with_auth(cfg, auth or full_auth(), **gateway)


def small_config(auth: GatewayAuth | None = None, **gateway: Any) -> Config:
    """Echo, slow and broken handler tools."""
    cfg = load_config_text(SMALL_CONFIG, base_dir=HERE)
    return with_auth(cfg, auth or full_auth(), **gateway)


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port, in this event loop."""
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets it knows are TCP.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the gateway did not start")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


class Stack:
    """A runtime, its gateway on loopback, a client session and the runtime's events."""

    def __init__(
        self, runtime: ToolRuntime, url: str, session: aiohttp.ClientSession, events: MemorySink
    ) -> None:
        self.runtime = runtime
        self.url = url
        self.session = session
        self.events = events

    async def post(
        self, path: str, body: Any = None, *, raw: bytes | None = None, **headers: str
    ) -> tuple[int, Any]:
        """POST JSON (or raw bytes); the status and the decoded JSON answer."""
        data = raw if raw is not None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **headers}
        async with self.session.post(self.url + path, data=data, headers=hdrs) as answer:
            return answer.status, json.loads(await answer.read())

    async def get(self, path: str, **headers: str) -> tuple[int, bytes]:
        """GET; the status and the raw body."""
        async with self.session.get(self.url + path, headers=headers) as answer:
            return answer.status, await answer.read()


StackFactory = Callable[..., AbstractAsyncContextManager[Stack]]


def bearer(token: str = TOKEN) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}
