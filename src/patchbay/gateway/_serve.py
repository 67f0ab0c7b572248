"""`patchbay serve`: the gateway under uvicorn, shut down gracefully.

On SIGTERM or SIGINT uvicorn stops accepting connections, lets the requests in flight finish
(up to `graceful_s`), then the app's shutdown closes the runtime, which waits for background
writes. Given the config's path, SIGHUP re-reads the config and its secrets and swaps them in
for new requests while those in flight finish on the old ones (see `_reload`). uvloop and
httptools are used when installed (measured: see bench/gateway.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from starlette.routing import BaseRoute

from patchbay.gateway._app import Lifespan, create_app
from patchbay.gateway._protocol import protocol_class
from patchbay.gateway._reload import ReloadingApp
from patchbay.integrations._mcp import mcp_asgi
from patchbay.runtime import ToolRuntime
from patchbay.spec import Config
from patchbay.state import StateStore, open_store

try:  # optional speed-up, measured in bench/gateway.py; the gateway works without it
    import uvloop
except ImportError:  # pragma: no cover - a dependency where wheels exist
    uvloop = None  # type: ignore[assignment]

__all__ = ["loop_factory", "run", "serve"]

log = logging.getLogger("patchbay.gateway")


def loop_factory(loop: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory when installed (`auto`) or asked for, else None (asyncio's)."""
    if loop == "asyncio" or uvloop is None:
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


async def serve(
    config: Config,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    fd: int | None = None,
    runtime: ToolRuntime | None = None,
    close_runtime: bool | None = None,
    extra_mounts: Sequence[BaseRoute] = (),
    extra_lifespan: Lifespan | None = None,
    graceful_s: int = 30,
    log_level: str = "info",
    access_log: bool = False,
    http: str = "auto",
    mcp: bool = True,
    freeze_gc: bool = False,
    proxy_headers: bool = False,
    config_path: str | None = None,
    **runtime_kw: Any,
) -> None:
    """Serve the gateway until SIGTERM/SIGINT, then finish calls in flight and close.

    Without `runtime`, one is built from `config` (with `runtime_kw`) and closed at shutdown;
    a runtime passed in is closed too when `close_runtime` says so. `extra_mounts` and
    `extra_lifespan` go to `create_app`; by default they are the MCP server at `/mcp`.
    `freeze_gc` (for a process that runs only the gateway, as `run` does) keeps the cycle
    collector off everything built before serving. `proxy_headers` takes the caller's address
    in refusal logs from X-Forwarded-For set by a proxy on this host; it is off by default
    because it puts one more layer in front of every tool call (measured in bench/gateway.py).
    With `config_path` (and no `runtime`), SIGHUP reloads the config from that file.
    """

    def build(cfg: Config, rt: ToolRuntime, close: bool) -> Any:
        mounts, lifespan = extra_mounts, extra_lifespan
        if mcp and not mounts and lifespan is None:
            # MCP over streamable HTTP at /mcp, behind the same caller authentication.
            mcp_http = mcp_asgi(rt)
            mounts, lifespan = [mcp_http.route()], mcp_http.lifespan
        return create_app(
            rt, cfg, extra_mounts=mounts, extra_lifespan=lifespan, close_runtime=close
        )

    reloading: ReloadingApp | None = None
    if config_path is not None and runtime is None:

        def generation(cfg: Config, store: StateStore) -> tuple[Any, ToolRuntime]:
            rt = ToolRuntime(cfg, store=store, **runtime_kw)
            return build(cfg, rt, True), rt

        reloading = ReloadingApp(
            config, config_path, generation, open_store(config.state), graceful_s
        )
        app: Any = reloading
    else:
        rt = runtime if runtime is not None else ToolRuntime(config, **runtime_kw)
        app = build(config, rt, runtime is None if close_runtime is None else close_runtime)
    uv = uvicorn.Config(
        app,
        host=host,
        port=port,
        # Headers and body must arrive within read_timeout_s (uvicorn bounds only idle time).
        http=protocol_class(http, config.gateway.read_timeout_s),
        lifespan="on",
        access_log=access_log,
        log_level=log_level,
        timeout_graceful_shutdown=graceful_s,
        # A voice platform keeps its connection open between the tool calls of a phone call.
        timeout_keep_alive=30,
        proxy_headers=proxy_headers,
        server_header=False,  # no need to tell callers which server software answers
    )
    server = uvicorn.Server(uv)
    # uvicorn would open an inherited fd as AF_UNIX, and asyncio only sets TCP_NODELAY on
    # sockets it knows are TCP: without it each answer waits ~40 ms for a delayed ACK.
    sockets = None if fd is None else [socket.socket(fileno=fd)]
    if freeze_gc:
        # What the imports and the start built lives as long as the process: moved out of the
        # collector's reach, a full collection walks only what calls allocate (bench/gateway.py).
        gc.freeze()
    reloads: set[asyncio.Task[bool]] = set()
    hup = getattr(signal, "SIGHUP", None)  # POSIX only
    if reloading is not None and hup is not None:
        loop = asyncio.get_running_loop()

        def on_hup() -> None:
            task = loop.create_task(reloading.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(hup, on_hup)
    try:
        await server.serve(sockets=sockets)
    finally:
        if reloading is not None and hup is not None:
            asyncio.get_running_loop().remove_signal_handler(hup)
    if not server.started:
        raise SystemExit(1)


def run(config: Config, *, loop: str = "auto", **kw: Any) -> None:
    """Run `serve` on a fresh event loop: uvloop when installed (`auto`), or `asyncio`."""
    kw.setdefault("freeze_gc", True)  # this process is the gateway's alone
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(serve(config, **kw))
