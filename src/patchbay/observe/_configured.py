"""The event sinks a config's `observe` block turns on: JSON lines, logs, Prometheus and OTLP.

The audit trail and body logs are `CallObserver`'s (they need the tool and its arguments);
everything here only reads events, so it is plain `EventSink`s added to the runtime's emitter.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import IO, TYPE_CHECKING

from patchbay._errors import ConfigError
from patchbay.observe._events import Event, EventSink
from patchbay.observe._otel import OtlpObserver, otlp_observer
from patchbay.observe._sinks import JsonLinesSink, LoggingSink
from patchbay.spec._model import Config
from patchbay.spec._ops import ObserveSpec, PrometheusSpec

if TYPE_CHECKING:
    from patchbay.observe._metrics import PrometheusSink

__all__ = [
    "OTEL_MISSING",
    "ConfiguredSinks",
    "file_errors",
    "otel_installed",
    "otlp_from_config",
]

# Resolves a secret reference to its value (the config's SecretResolver, revealed).
ResolveRef = Callable[[str], Awaitable[str]]

log = logging.getLogger("patchbay.observe")
OTEL_MISSING = (
    "observe.otlp needs the OpenTelemetry packages, which are not installed: "
    "pip install 'patchbay[otel]'"
)
# Events that end a tool call: the points where a file sink makes its lines visible.
_ENDS = frozenset({"tool_call", "background"})


def otel_installed() -> bool:
    """Whether the optional OpenTelemetry SDK and its OTLP/HTTP exporter can be imported."""
    # find_spec only looks the packages up; importing them costs start-up time.
    from importlib.util import find_spec

    try:
        return all(
            find_spec(name) is not None
            for name in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")
        )
    except ModuleNotFoundError:  # a parent package is missing altogether
        return False


def file_errors(config: Config) -> list[ConfigError]:
    """An error for each file `observe` writes that cannot be written (its folder is made).

    For commands to refuse at start rather than lose every line later; the audit trail
    opens its file on the first call, so without this it would only log why it cannot.
    """
    spec, base = config.observe, Path(config.base_dir)
    found = []
    for where, name in (
        ("observe.jsonl.path", spec.jsonl.path if spec.jsonl else None),
        ("observe.audit.path", spec.audit.path if spec.audit else None),
        ("observe.prometheus.path", spec.prometheus.path if spec.prometheus else None),
    ):
        if name is None:
            continue
        path = base / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            found.append(ConfigError(f"cannot create {exc.filename}: {exc.strerror}", where))
            continue
        target = path if path.exists() else path.parent
        if path.is_dir() or not os.access(target, os.W_OK):
            found.append(ConfigError(f"cannot write {path}", where))
    return found


class _JsonLinesFile:
    """`observe.jsonl`: events as redacted JSON lines appended to a file.

    Buffered, and flushed when a tool call ends: one write per call rather than per event,
    and a reader tailing the file sees whole calls.
    """

    __slots__ = ("_fh", "_lines")

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = path.open("a", encoding="utf-8")
        self._lines = JsonLinesSink(self._fh)

    def emit(self, event: Event) -> None:
        """Write one event; flush at the end of a tool call."""
        self._lines.emit(event)
        if event.kind in _ENDS:
            self._fh.flush()

    def close(self) -> None:
        """Flush and close the file."""
        self._fh.close()


class _Textfile:
    """`observe.prometheus.path`: the metrics written to a file in the Prometheus text format.

    Rewritten (atomically, through a temporary file and a rename) at most every `interval_s`
    while tool calls end, and at close; node_exporter's textfile collector reads such files.
    """

    __slots__ = ("_due", "_interval", "_metrics", "_path")

    def __init__(self, metrics: PrometheusSink, path: Path, interval_s: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(path.parent, os.W_OK):  # said at start, not at the first call's end
            raise PermissionError(13, "Permission denied", str(path.parent))
        self._metrics = metrics
        self._path = path
        self._interval = interval_s
        self._due = 0.0  # the first call ending writes the file

    def emit(self, event: Event) -> None:
        """Rewrite the file when a tool call ends and the interval has passed."""
        if event.kind in _ENDS and time.monotonic() >= self._due:
            self.write()

    def write(self) -> None:
        """Write the metrics now."""
        self._due = time.monotonic() + self._interval
        fd, tmp = tempfile.mkstemp(prefix=".metrics-", dir=self._path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(self._metrics.exposition())
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from a collector's user
            os.replace(tmp, self._path)
        except BaseException:
            os.unlink(tmp)
            raise


class ConfiguredSinks:
    """Builds the sinks `observe` asks for (none when it asks for none) and closes them.

    `jsonl` appends events to a file; `log.level` adds the `patchbay.events` logger (unless
    the runtime already logs events); `prometheus` keeps metrics (`metrics`, served by the
    gateway at /metrics) and with `path` writes them to a file. `otlp` is built by
    `otlp_from_config` and handed to the runtime as `otel`; here it is only checked.
    Relative paths are taken from the config's directory.
    """

    def __init__(
        self,
        spec: ObserveSpec,
        base_dir: str | Path,
        *,
        tools: Collection[str],
        tenants: Collection[str],
        logs_events: bool,
        traced: bool = False,
    ) -> None:
        base = Path(base_dir)
        self.sinks: list[EventSink] = []
        self.metrics: PrometheusSink | None = None
        self._files: list[_JsonLinesFile] = []
        self._textfile: _Textfile | None = None
        if spec.otlp is not None and not traced:
            if not otel_installed():
                raise ConfigError(OTEL_MISSING)
            # Its header references resolve asynchronously: the CLI builds it before the runtime.
            log.warning(
                "observe.otlp: this runtime was given no exporter, so nothing is sent; pass "
                "ToolRuntime(config, otel=patchbay.observe.otlp_observer(...))"
            )
        if spec.jsonl is not None:
            try:
                lines = _JsonLinesFile(base / spec.jsonl.path)
            except OSError as exc:
                where = "observe.jsonl"
                raise ConfigError(f"cannot open {exc.filename}: {exc.strerror}", where) from None
            self._files.append(lines)
            self.sinks.append(lines)
        if spec.log.level is not None and not logs_events:
            self.sinks.append(LoggingSink())
        if spec.prometheus is not None:
            self._prometheus(spec.prometheus, base, tools, tenants)

    @classmethod
    def build(cls, config: Config, *, logs_events: bool, traced: bool = False) -> ConfiguredSinks:
        """The sinks `config.observe` asks for; `logs_events`: the runtime already logs events;
        `traced`: the runtime was given the OTLP exporter (`otel`)."""
        # Names callers make up (tools, tenants) are counted under one label each.
        tenants = {t for i in config.integrations.values() for t in i.tenants}
        tenants.update(config.gateway.auth.tenants)
        return cls(
            config.observe,
            config.base_dir,
            tools=config.tools,
            tenants=tenants,
            logs_events=logs_events,
            traced=traced,
        )

    def _prometheus(
        self,
        spec: PrometheusSpec,
        base: Path,
        tools: Collection[str],
        tenants: Collection[str],
    ) -> None:
        # Imported only when metrics are asked for: prometheus_client costs start-up time.
        from patchbay.observe._metrics import PrometheusSink

        self.metrics = PrometheusSink(tools=tools, tenants=tenants)
        self.sinks.append(self.metrics)
        if spec.path is not None:
            try:
                self._textfile = _Textfile(self.metrics, base / spec.path, spec.interval_s)
            except OSError as exc:
                where = "observe.prometheus.path"
                raise ConfigError(
                    f"cannot write in {exc.filename}: {exc.strerror}", where
                ) from None
            self.sinks.append(self._textfile)

    def close(self) -> None:
        """Write the metrics file one last time and close the files."""
        if self._textfile is not None:
            try:
                self._textfile.write()
            except OSError as exc:  # observation must never fail a shutdown
                log.error("observe.prometheus.path: metrics not written: %s", exc.strerror)
        for lines in self._files:
            lines.close()


# --- OTLP: `observe.otlp` -> `otlp_observer` (the runtime takes it as `otel=`) -------------
async def otlp_from_config(spec: ObserveSpec, resolve: ResolveRef) -> OtlpObserver | None:
    """The OTLP exporter `spec.otlp` asks for (None without one), its headers resolved.

    Header values are secret references resolved through `resolve` (the config's secret
    resolver, which also remembers them for log redaction); they go to the collector only.
    Raises ConfigError when the `otel` extra is not installed.
    """
    otlp = spec.otlp
    if otlp is None:
        return None
    if not otel_installed():
        raise ConfigError(OTEL_MISSING)
    headers = {name: await resolve(ref) for name, ref in otlp.headers.items()}
    try:
        return otlp_observer(
            otlp.endpoint,
            traces=otlp.traces,
            metrics=otlp.metrics,
            service_name=otlp.service_name,
            headers=headers or None,
        )
    except ValueError as exc:  # a header value that cannot be sent (named, never shown)
        raise ConfigError(f"observe.otlp: {exc}") from None
