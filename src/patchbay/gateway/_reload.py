"""Reloading `patchbay serve` on SIGHUP without dropping calls in flight.

The gateway runs as generations: each one a runtime and its app, built from one reading of the
config file with its secrets resolved afresh. SIGHUP builds the next generation; once its start
succeeded (config valid, every secret resolved, gateway credentials loaded) new requests go to
it, while requests already inside the old one finish there before the old runtime is closed. A
config that fails to load or start leaves the running generation in place, with the error
logged. All generations share one state store (limits, breakers, idempotency, call state), so a
phone call keeps its state across a reload; changing `state:` itself needs a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, cast

from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from patchbay._errors import ConfigErrors, PatchbayError, SecretError
from patchbay.http import check_secrets
from patchbay.runtime import ToolRuntime
from patchbay.spec import Config, load_config
from patchbay.state import StateStore

__all__ = ["Generation", "ReloadingApp", "describe_changes"]

log = logging.getLogger("patchbay.gateway")

# Builds one generation's app for a config, its runtime using the store handed in.
BuildApp = Callable[[Config, StateStore], tuple[ASGIApp, ToolRuntime]]


class _KeptOpen:
    """The shared store as one generation sees it: closing a generation leaves it open."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def close(self) -> None:
        """Nothing: the store outlives the generation (ReloadingApp closes it at the end)."""


class _Lifespan:
    """Drives an inner ASGI app's lifespan (startup, later shutdown) outside any server."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _next(self) -> Message:
        assert self._task is not None
        got = asyncio.ensure_future(self._outbox.get())
        await asyncio.wait({got, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if got.done():
            return got.result()
        got.cancel()
        exc = self._task.exception()
        return {"type": "failed", "message": f"{type(exc).__name__}: {exc}" if exc else "ended"}

    async def _run(self, scope: Scope) -> None:
        await self._app(scope, self._inbox.get, self._outbox.put)

    async def startup(self) -> None:
        """Run the app's startup; raise RuntimeError with the app's message if it fails."""
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        self._task = asyncio.create_task(self._run(scope))
        await self._inbox.put({"type": "lifespan.startup"})
        answer = await self._next()
        if answer["type"] != "lifespan.startup.complete":
            with contextlib.suppress(BaseException):
                await self._task
            # Starlette sends the whole traceback; its last line names the error
            lines = [line for line in str(answer.get("message", "")).splitlines() if line.strip()]
            raise RuntimeError(lines[-1] if lines else "the gateway did not start")

    async def shutdown(self) -> None:
        """Run the app's shutdown (its runtime is closed there); errors are logged."""
        if self._task is None or self._task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        answer = await self._next()
        if answer["type"] != "lifespan.shutdown.complete":
            log.error("a gateway generation did not shut down cleanly: %s", answer.get("message"))
        with contextlib.suppress(BaseException):
            await self._task


class Generation:
    """One config's runtime and app, and how many requests are inside it."""

    def __init__(self, config: Config, app: ASGIApp, runtime: ToolRuntime) -> None:
        self.config = config
        self.app = app
        self.runtime = runtime
        self.lifespan = _Lifespan(app)
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()


def describe_changes(old: Config, new: Config) -> str:
    """What differs between two configs, by section and name (never a value)."""
    parts: list[str] = []
    for section in ("tools", "integrations"):
        before: dict[str, Any] = getattr(old, section)
        after: dict[str, Any] = getattr(new, section)
        added = sorted(after.keys() - before.keys())
        removed = sorted(before.keys() - after.keys())
        changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
        words = [f"+{k}" for k in added] + [f"-{k}" for k in removed] + [f"~{k}" for k in changed]
        if words:
            parts.append(f"{section} {' '.join(words)}")
    skip = {"tools", "integrations", "base_dir"}
    for name in type(new).model_fields:
        before, after = getattr(old, name), getattr(new, name)
        if name in skip or before == after:
            continue
        if isinstance(after, BaseModel) and type(before) is type(after):
            inner = [f for f in type(after).model_fields if getattr(before, f) != getattr(after, f)]
            parts.append(" ".join(f"{name}.{f}" for f in inner) + " changed")
        else:
            parts.append(f"{name} changed")
    return "; ".join(parts) if parts else "no config change"


class ReloadingApp:
    """The ASGI app `patchbay serve` runs when it may reload: it forwards to the newest
    generation and builds the next one from `path` on `reload()` (SIGHUP)."""

    def __init__(
        self, config: Config, path: str, build: BuildApp, store: StateStore, graceful_s: float
    ) -> None:
        self._path = path
        self._build = build
        self._store = store
        self._graceful_s = graceful_s
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self.current = self._generation(config)
        self._serving = False  # a reload before the first start (or after shutdown) is ignored
        self.reloads = 0  # generations swapped in since start (for tests and the log)

    def _generation(self, config: Config) -> Generation:
        app, runtime = self._build(config, cast(StateStore, _KeptOpen(self._store)))
        return Generation(config, app, runtime)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        gen = self.current
        gen.inflight += 1
        gen.idle.clear()
        try:
            await gen.app(scope, receive, send)
        finally:
            gen.inflight -= 1
            if gen.inflight == 0:
                gen.idle.set()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        try:
            await self.current.lifespan.startup()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        self._serving = True
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown: uvicorn has let requests in flight finish
        async with self._lock:
            self._serving = False
            last = self.current
            # background writes of the last generation are sent before the store closes
            await last.runtime.drain(float(self._graceful_s))
            await last.lifespan.shutdown()
            if self._retiring:
                await asyncio.wait(self._retiring, timeout=self._graceful_s)
            await self._store.close()
        await send({"type": "lifespan.shutdown.complete"})

    async def reload(self) -> bool:
        """Build a generation from the config file now; swap it in, or keep the current one."""
        async with self._lock:
            if not self._serving:
                log.warning("reload ignored: the gateway is starting or stopping")
                return False
            old = self.current
            try:
                config = await asyncio.to_thread(load_config, self._path)
            except (ConfigErrors, OSError) as exc:
                log.error("reload failed, the running config stays: %s", _one_line(exc))
                return False
            if config.state != old.config.state:
                log.error("reload refused: `state` changed; the state store changes on restart")
                return False
            try:
                errors = await check_secrets(config)
                if errors:
                    raise SecretError("; ".join(f"{e.location}: {e.message}" for e in errors))
                new = self._generation(config)
            except (PatchbayError, ValueError) as exc:
                log.error("reload failed, the running config stays: %s", _one_line(exc))
                return False
            try:
                await new.lifespan.startup()
            except RuntimeError as exc:
                log.error("reload failed, the running config stays: %s", _one_line(exc))
                return False
            self.current = new
            self.reloads += 1
            log.info(
                "config reloaded from %s, secrets re-read: %s",
                self._path,
                describe_changes(old.config, config),
            )
            task = asyncio.create_task(self._retire(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            return True

    async def _retire(self, gen: Generation) -> None:
        """Close a replaced generation once its requests in flight have finished."""
        try:
            await asyncio.wait_for(gen.idle.wait(), self._graceful_s)
        except TimeoutError:
            log.warning(
                "%d request(s) still open on the previous config after %ss; closing it",
                gen.inflight,
                self._graceful_s,
            )
        await gen.lifespan.shutdown()


def _one_line(exc: BaseException) -> str:
    return " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())
