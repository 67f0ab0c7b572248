"""Shared fixtures: a real Redis server, and a finder for the server binaries tests start."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis

from patchbay.testing import BillingServer, FaultProxy

_LOCAL_REDIS = ("127.0.0.1", 6379)
# A database other than 0 keeps test keys away from whatever a developer keeps in the default.
_LOCAL_DB = 15


# Written by hand rather than with pytest-redis: it must reuse a local server when one answers
# and restart a private one on the same port for the outage test, and that is all it does.
class RedisServer:
    """A private redis-server process on a free loopback port; it can be stopped and restarted."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server (on the same port as before) and wait until it answers PING."""
        self._proc = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not _answers(("127.0.0.1", self.port)):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        """Kill the server abruptly, as a crash would."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._proc = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(address: tuple[str, int], db: int = 0) -> bool:
    client = redis.Redis(host=address[0], port=address[1], db=db, socket_connect_timeout=0.2)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError):
        return False
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_server_factory() -> Iterator[Callable[[], RedisServer]]:
    """Start private redis-server processes on demand; all are stopped at session end."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer()
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture(scope="session")
def _redis_base_url(request: pytest.FixtureRequest) -> str:
    if _answers(_LOCAL_REDIS, _LOCAL_DB):
        return f"redis://{_LOCAL_REDIS[0]}:{_LOCAL_REDIS[1]}/{_LOCAL_DB}"
    factory: Callable[[], RedisServer] = request.getfixturevalue("redis_server_factory")
    return factory().url


@pytest.fixture
def redis_url(_redis_base_url: str) -> str:
    """URL of a real Redis: the local one on 6379 if it answers, else a private server."""
    return _redis_base_url


@pytest.fixture
def redis_key_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own, so parallel runs do not collide; its keys are removed."""
    prefix = f"patchbay-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# The example billing API behind a fault-injecting proxy, for runtime and resilience tests.
@pytest.fixture
async def billing() -> AsyncIterator[BillingServer]:
    async with BillingServer(in_process=True) as server:
        yield server


@pytest.fixture
async def proxy(billing: BillingServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(billing.url) as p:
        yield p


@pytest.fixture
def env(
    billing: BillingServer, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    # The env: secret provider reads the process environment, as it does in production.
    monkeypatch.setenv("BILLING_API_KEY", billing.api_key)
    return {**os.environ, "BILLING_URL": proxy.url, "BILLING_API_KEY": billing.api_key}


@pytest.fixture(scope="session")
def require_binary() -> Callable[..., str]:
    """Find a server binary a test starts (chromium, tinyproxy, bao...).

    `.ci/run` installs every one and sets PATCHBAY_REQUIRE_BINARIES=1, so a missing binary there
    fails the test; on a developer's machine the test is skipped, naming the package to install.
    """

    def find(*names: str, package: str) -> str:
        for name in names:
            path = shutil.which(name)
            if path:
                return path
        message = f"{names[0]} is not installed (Debian package {package}; .ci/run installs it)"
        if os.environ.get("PATCHBAY_REQUIRE_BINARIES") == "1":
            pytest.fail(message)
        pytest.skip(message)

    return find
