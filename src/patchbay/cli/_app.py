"""The `patchbay` command: shared app object and helpers for every subcommand."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer import _click as click  # typer vendors click: its commands are these classes
from typer.core import TyperCommand

from patchbay import __version__
from patchbay._errors import ConfigError, ConfigErrors

if TYPE_CHECKING:
    from patchbay.spec import Config

# Each command imports what it needs when it runs (the spec's models, the runtime, the gateway,
# the MCP SDK): `patchbay --help` and the light commands start in a fraction of the time.
# Plain help (no Rich panels) keeps Rich out of start-up and its `<str>` markers out of help.
app = typer.Typer(
    name="patchbay",
    help="Connect voice agents to your own REST APIs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

CONFIG_HELP = "Path to patchbay.yaml, or module:registry naming Python-declared tools"
_MARKER = re.compile(r" <([^>]*)>")
_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH", "bool": ""}


def _words(match: re.Match[str]) -> str:
    """Typer's `<str>` marker as the word click prints (TEXT), choices as [a|b]."""
    inner = match.group(1)
    word = _WORDS.get(inner, f"[{inner}]" if "|" in inner else inner.upper())
    return f" {word}" if word else ""


def _choices(match: re.Match[str]) -> str:
    inner = match.group(1)
    return f" [{inner}]" if "|" in inner else ""


class PlainHelpCommand(TyperCommand):
    """Help that reads `patchbay call [OPTIONS] TOOL` and `--args TEXT`: typer's `{TOOL}` and
    `<str>` markers look like placeholders a newcomer should fill in."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [re.sub(r"^\{(.*)\}((?:\.\.\.)?)$", r"\1\2", piece) for piece in pieces]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                name, text = record
                if param.param_type_name == "argument":  # its name says what it is
                    sections["Arguments"].append((_MARKER.sub(_choices, name), text))
                else:
                    sections["Options"].append((_MARKER.sub(_words, name), text))
        for title, rows in sections.items():
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def plain_help(typer_app: typer.Typer) -> None:
    """Give every command registered so far the plain help of PlainHelpCommand."""
    for info in typer_app.registered_commands:
        if info.cls in (None, TyperCommand):
            info.cls = PlainHelpCommand


# `-c tools:registry` or `-c my.pkg:config`: a Python module's ToolRegistry or Config.
_PYTHON_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def _print_version(show: bool) -> None:
    if show:
        print(f"patchbay {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """Connect voice agents to your own REST APIs."""


def fail(message: str) -> NoReturn:
    """Print a one-line reason to stderr and exit 2 (bad config, unknown tool, bad input)."""
    print(f"patchbay: {message}", file=sys.stderr)
    raise typer.Exit(2)


def load_or_exit(path: str) -> Config:
    """Load a config file (or a Python module's tools), or print every mistake and exit 2."""
    # Imported when a command runs: the spec's models are most of a light command's start-up.
    from patchbay.spec import load_config, load_python_config

    try:
        if not Path(path).exists() and _PYTHON_REF.fullmatch(path):
            return load_python_config(path)
        return load_config(path)
    except ConfigErrors as exc:
        for err in exc.errors:
            print(f"patchbay: {err}", file=sys.stderr)
        raise typer.Exit(2) from None
    except ConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")


def _used_by(location: str, integration: str, tenant: str | None) -> bool:
    """Whether a secret at `location` is one a call of `integration` as `tenant` may use."""
    own = f"integrations.{integration}."
    tenants = f"{own}tenants."
    if not location.startswith(own):
        return False
    return not location.startswith(tenants) or location.startswith(f"{tenants}{tenant}.")


def secrets_or_exit(
    cfg: Config, *, integration: str | None = None, tenant: str | None = None
) -> None:
    """Resolve every secret reference now, or print each that fails (by location) and exit 2.

    Without this a missing secret would pass start-up and fail every later call instead. With
    `integration`, only the references a call of it (as `tenant`) may use count.
    """
    # Imported when a command runs, for start-up time (see `app`).
    import asyncio

    from patchbay.http import check_secrets

    errors = asyncio.run(check_secrets(cfg))
    if integration is not None:
        errors = [e for e in errors if _used_by(e.location, integration, tenant) or _observed(e)]
    for err in errors:
        print(f"patchbay: {err}", file=sys.stderr)
    if errors:
        raise typer.Exit(2)


def _observed(err: ConfigError) -> bool:
    """Whether an error is about `observe` (audit key, collector headers): every run uses it."""
    return err.location.startswith("observe.")


def observe_or_exit(
    cfg: Config, *, logs: bool = False, runtime: bool = False, serves_metrics: bool = False
) -> dict[str, Any]:
    """Refuse (exit 2) an `observe` block this installation cannot honour.

    With `logs` (commands that set up no logging of their own), `observe.log.level` sends
    patchbay's logs, events among them, to stderr. With `runtime`, the keyword arguments of
    the command's ToolRuntime that `observe` asks for (`otel` for `observe.otlp`); the other
    sinks the runtime builds from the config itself. Without `serves_metrics` (no /metrics),
    `prometheus` without a `path` is said to publish nothing.
    """
    # Imported when a command runs, for start-up time (see `app`).
    import logging

    from patchbay.observe._configured import OTEL_MISSING, file_errors, otel_installed

    observe = cfg.observe
    if observe.otlp is not None and not otel_installed():
        fail(OTEL_MISSING)
    if logs and observe.log.level is not None:
        logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("patchbay").setLevel(observe.log.level.upper())
    if not runtime:
        return {}
    if observe.prometheus is not None and observe.prometheus.path is None and not serves_metrics:
        print(
            "warning: observe.prometheus: this command serves no /metrics; set "
            "observe.prometheus.path to write the metrics to a file",
            file=sys.stderr,
        )
    unwritable = file_errors(cfg)
    for err in unwritable:
        print(f"patchbay: {err}", file=sys.stderr)
    if unwritable:
        raise typer.Exit(2)
    return {} if observe.otlp is None else {"otel": _otlp_or_exit(cfg)}


def _otlp_or_exit(cfg: Config) -> Any:
    """`observe.otlp`'s exporter, its header references resolved by the config's resolver."""
    # Imported when a command runs, for start-up time (see `app`).
    import asyncio

    from patchbay._errors import SecretError
    from patchbay.http import build_resolver
    from patchbay.observe._configured import otlp_from_config

    resolver = build_resolver(cfg)

    async def reveal(ref: str) -> str:
        return (await resolver.resolve(ref)).reveal()

    try:
        return asyncio.run(otlp_from_config(cfg.observe, reveal))
    except ConfigError as exc:
        fail(str(exc))
    except (SecretError, ValueError, RuntimeError) as exc:  # the reason names no value
        fail(f"observe.otlp: {exc}")
