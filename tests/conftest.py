"""Shared fixtures: a real Redis server, and a finder for the server binaries tests start."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
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


class LocalRedisCluster:
    """A private 3-node Redis Cluster (no replicas) on free loopback ports, each node a process."""

    def __init__(self, folder: Path) -> None:
        self.ports = _cluster_ports(3)
        self.url = f"redis+cluster://127.0.0.1:{self.ports[0]}"
        self._folder = folder
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for port in self.ports:
            node = self._folder / str(port)
            node.mkdir(parents=True, exist_ok=True)
            command = [
                "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--save", "", "--appendonly", "no",
            ]  # fmt: skip
            self._procs.append(
                subprocess.Popen(
                    command, cwd=node, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        for port in self.ports:
            _wait_until(lambda port=port: _answers(("127.0.0.1", port)), f"node {port}")
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        done = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *nodes,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-500:]!r}")
        _wait_until(self._ready, "cluster_state:ok on every node")

    def _ready(self) -> bool:
        for port in self.ports:
            client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
            try:
                if client.cluster("info").get("cluster_state") != "ok":
                    return False
            except (redis.RedisError, OSError):
                return False
            finally:
                client.close()
        return True

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def _cluster_ports(n: int) -> list[int]:
    """Free ports whose cluster bus ports (port + 10000, Redis's rule) are free too."""
    found: list[int] = []
    while len(found) < n:
        port = random.randint(20000, 45000)
        if port in found or not all(_bindable(p) for p in (port, port + 10000)):
            continue
        found.append(port)
    return found


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _wait_until(check: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def redis_cluster_url(
    tmp_path_factory: pytest.TempPathFactory, require_binary: Callable[..., str]
) -> Iterator[str]:
    """`redis+cluster://` URL of a 3-node Redis Cluster this session starts for itself."""
    require_binary("redis-server", package="redis-server")
    require_binary("redis-cli", package="redis-tools")
    cluster = LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster_prefix(redis_cluster_url: str) -> Iterator[str]:
    """A key prefix of this test's own on the cluster; its keys are removed afterwards."""
    prefix = f"patchbay-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.RedisCluster.from_url(redis_cluster_url.replace("redis+cluster", "redis"))
    try:
        for key in client.scan_iter(match=prefix + "*", count=1000):
            client.delete(key)
    finally:
        client.close()


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


_LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The machine's PostgreSQL (trust auth on loopback), started if it is installed but down.

    `.ci/run` sets PATCHBAY_REQUIRE_BINARIES=1: there a PostgreSQL that never answers fails the
    tests that need it; elsewhere they are skipped.
    """
    url = os.environ.get("PATCHBAY_TEST_POSTGRES", _LOCAL_POSTGRES)
    if not _port_open(("127.0.0.1", 5432)) and shutil.which("pg_ctlcluster"):
        versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
        for version in versions[-1:]:
            command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"]
            subprocess.run(command, capture_output=True, check=False, timeout=60)
    if not _port_open(("127.0.0.1", 5432)):
        message = "PostgreSQL does not answer on 127.0.0.1:5432"
        if os.environ.get("PATCHBAY_REQUIRE_BINARIES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture
def postgres_key_prefix() -> Iterator[str]:
    """A key prefix of this test's own in the shared state table; its rows are removed after.

    Synchronous, so other fixtures can ask for it from inside a running event loop: the
    clean-up runs its own loop on a thread of its own.
    """
    prefix = f"patchbay-test:{uuid.uuid4().hex}:"
    yield prefix
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _remove_postgres_keys(prefix)).result(timeout=30)


async def _remove_postgres_keys(prefix: str) -> None:
    try:
        conn = await asyncpg.connect(os.environ.get("PATCHBAY_TEST_POSTGRES", _LOCAL_POSTGRES))
    except (OSError, asyncpg.PostgresError):
        return  # no PostgreSQL here: the test did not use it
    try:
        for table in ("patchbay_state", "patchbay_state_fields"):
            await conn.execute(f"DELETE FROM {table} WHERE starts_with(key, $1)", prefix)
    except asyncpg.UndefinedTableError:
        pass  # the table was never created: nothing to remove
    finally:
        await conn.close()


def _port_open(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=1.0):
            return True
    except OSError:
        return False


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
