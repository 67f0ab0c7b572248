"""Run the reference billing API on loopback for tests, the demo and benchmarks."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType, TracebackType
from typing import IO, Any, Self

import aiohttp
import uvicorn

__all__ = ["BillingServer", "find_billing_service"]

_SERVICE = Path("examples") / "billing" / "service.py"


def find_billing_service(path: str | os.PathLike[str] | None = None) -> Path:
    """The billing service's file: the given path, else the repo's, else the working dir's."""
    if path is not None:
        found = Path(path)
        if not found.is_file():
            raise FileNotFoundError(f"no billing service at {found}")
        return found.resolve()
    # src/patchbay/testing/_servers.py -> the repository root is three parents up.
    candidates = [Path(__file__).resolve().parents[3] / _SERVICE, Path.cwd() / _SERVICE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "examples/billing/service.py not found next to the source tree or in the working "
        "directory; pass BillingServer(service_path=...)"
    )


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return sock


def _load_service(path: Path) -> ModuleType:
    name = "_patchbay_billing_service"
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) == str(path):
        return loaded
    # As `python service.py` would: its folder is importable, for its sibling modules.
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class BillingServer:
    """The reference billing API on a free loopback port, in a subprocess or a thread.

    The subprocess (the default) keeps the upstream off the event loop and GIL of the code under
    test, which benchmarks and chaos tests need; ``in_process=True`` starts in milliseconds for
    unit tests.

    Payments posted with ``"confirm": "async"`` answer 202 and clear ``webhook_delay_s`` later;
    with a ``webhook_url`` and its ``whsec_`` secret, each then sends a signed payment.succeeded
    there (retried ``webhook_attempts`` times, waiting ``webhook_backoff_s``, doubling).
    """

    def __init__(
        self,
        *,
        api_key: str = "demo-key",
        db_path: str = ":memory:",
        in_process: bool = False,
        service_path: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout_s: float = 15.0,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_delay_s: float = 0.5,
        webhook_attempts: int = 5,
        webhook_backoff_s: float = 0.5,
    ) -> None:
        if webhook_url is not None and not (webhook_secret or "").startswith("whsec_"):
            raise ValueError("webhook_url needs webhook_secret, a whsec_<base64> secret")
        self.api_key = api_key
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.webhook_delay_s = webhook_delay_s
        self.webhook_attempts = webhook_attempts
        self.webhook_backoff_s = webhook_backoff_s
        self.db_path = db_path
        self.in_process = in_process
        self.service_path = find_billing_service(service_path)
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the running service, no trailing slash."""
        if not self.running:
            raise RuntimeError("BillingServer is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether start() has succeeded and stop() has not been called."""
        return self._process is not None or self._server is not None

    @property
    def headers(self) -> dict[str, str]:
        """Headers that authenticate to the service."""
        return {"X-API-Key": self.api_key}

    def start(self) -> Self:
        """Start the service and return once it answers."""
        if self.running:
            raise RuntimeError("BillingServer is already running")
        # The parent binds, so the port is ours before the child exists: no free-port race.
        sock = _listening_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        try:
            if self.in_process:
                self._start_thread(sock)
            else:
                self._start_process(sock)
        finally:
            if not self.in_process:
                sock.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_process(self, sock: socket.socket) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child
        fd = sock.fileno()
        env = {**os.environ, "BILLING_API_KEY": self.api_key}
        env.pop("BILLING_WEBHOOK_SECRET", None)
        command = [sys.executable, str(self.service_path), "--host", self.host]
        command += ["--port", str(self.port), "--db", self.db_path, "--fd", str(fd)]
        command += ["--webhook-delay", str(self.webhook_delay_s)]
        if self.webhook_url is not None and self.webhook_secret is not None:
            env["BILLING_WEBHOOK_SECRET"] = self.webhook_secret  # never on a command line
            command += ["--webhook-url", self.webhook_url]
            command += ["--webhook-attempts", str(self.webhook_attempts)]
            command += ["--webhook-backoff", str(self.webhook_backoff_s)]
        self._process = subprocess.Popen(
            command,
            pass_fds=(fd,),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def _start_thread(self, sock: socket.socket) -> None:
        app = _load_service(self.service_path).create_app(
            self.db_path,
            self.api_key,
            webhook_url=self.webhook_url,
            webhook_secret=self.webhook_secret,
            webhook_delay_s=self.webhook_delay_s,
            webhook_attempts=self.webhook_attempts,
            webhook_backoff_s=self.webhook_backoff_s,
        )
        config = uvicorn.Config(app, access_log=False, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        self._server = server

        def serve() -> None:
            try:
                server.run(sockets=[sock])
            finally:
                sock.close()

        self._thread = threading.Thread(target=serve, name="billing-server", daemon=True)
        self._thread.start()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        health = f"http://{self.host}:{self.port}/_health"
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"billing service exited at startup:\n{self._stderr_tail()}")
            if self._thread is not None and not self._thread.is_alive():
                raise RuntimeError("billing service thread exited at startup")
            try:
                with urllib.request.urlopen(health, timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass  # not listening yet: poll again
            if time.monotonic() > deadline:
                raise TimeoutError(f"billing service not answering after {self.startup_timeout_s}s")
            time.sleep(0.02)

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()[-4000:].decode(errors="replace")

    def stop(self) -> None:
        """Stop the service; safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=10)
        stderr, self._stderr = self._stderr, None
        if stderr is not None:
            stderr.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        # Starting blocks while the child imports and binds; keep the caller's loop free.
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    async def _call(self, method: str, path: str) -> Any:
        async with (
            aiohttp.ClientSession(headers=self.headers) as session,
            session.request(method, self.url + path) as answer,
        ):
            answer.raise_for_status()
            return await answer.json()

    async def ledger(self) -> dict[str, Any]:
        """The service's ledger: payments, charges_by_invoice, amount_by_invoice, requests."""
        found: dict[str, Any] = await self._call("GET", "/_ledger")
        return found

    async def webhooks(self) -> list[dict[str, Any]]:
        """The webhooks sent so far: id, type, attempts (status or error name each), delivered."""
        found: dict[str, Any] = await self._call("GET", "/_webhooks")
        deliveries: list[dict[str, Any]] = found["deliveries"]
        return deliveries

    async def payment(self, payment_id: str) -> dict[str, Any]:
        """An asynchronous payment: status, invoice_id, amount, confirmation_number once cleared."""
        found: dict[str, Any] = await self._call("GET", f"/payments/{payment_id}")
        return found

    async def reset(self) -> None:
        """Put the seed data back and zero the request counters."""
        await self._call("POST", "/_reset")

    def __repr__(self) -> str:
        where = "thread" if self.in_process else "subprocess"
        state = f"{self.host}:{self.port}" if self.running else "stopped"
        return f"<BillingServer {where} {state}>"
