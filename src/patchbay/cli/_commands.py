"""`patchbay validate`, `tools` and `call`: check a config, print schemas, run one tool."""

from __future__ import annotations

import enum
import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from patchbay.cli._app import (
    CONFIG_HELP,
    app,
    fail,
    load_or_exit,
    observe_or_exit,
    secrets_or_exit,
)

if TYPE_CHECKING:
    from patchbay.observe import Event
    from patchbay.spec import Config

ConfigOpt = Annotated[str, typer.Option("--config", "-c", help=CONFIG_HELP)]


# spec.SchemaFormat's values spelled out, so --help need not load the spec's models; a test
# keeps the two equal.
class Format(enum.StrEnum):
    """The LLM APIs whose tool format `patchbay tools` prints."""

    OPENAI = "openai"
    REALTIME = "realtime"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"
    MCP = "mcp"


@app.command()
def validate(config: ConfigOpt = "patchbay.yaml") -> None:
    """Check a config and resolve its secrets: every mistake is printed with its location."""
    # Imported when the command runs, for start-up time (see cli._app).
    from patchbay.spec._checks import state_warnings

    cfg = load_or_exit(config)
    secrets_or_exit(cfg)
    observe_or_exit(cfg)
    for warning in state_warnings(cfg.state, cfg.tools):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"ok: {len(cfg.integrations)} integrations, {len(cfg.tools)} tools")


@app.command()
def tools(
    config: ConfigOpt = "patchbay.yaml",
    fmt: Annotated[
        Format, typer.Option("--format", "-f", help="Which LLM API's tool format")
    ] = Format.OPENAI,
    strict: Annotated[bool, typer.Option(help="OpenAI strict-mode schemas")] = True,
) -> None:
    """Print every tool's schema in an LLM API's format, as JSON."""
    # Imported when the command runs, for start-up time (see cli._app).
    from patchbay.spec import SchemaFormat, export_tools

    cfg = load_or_exit(config)
    schemas = export_tools(cfg.tools.values(), SchemaFormat(fmt.value), strict=strict)
    print(json.dumps(schemas, indent=2))


@app.command()
def call(
    tool: Annotated[str, typer.Argument(help="The tool to run", metavar="TOOL")],
    config: ConfigOpt = "patchbay.yaml",
    args: Annotated[str, typer.Option("--args", help="Arguments as a JSON object")] = "{}",
    call_id: Annotated[str, typer.Option("--call-id", help="The phone call's id")] = "cli",
    tenant: Annotated[str | None, typer.Option(help="Tenant for per-tenant settings")] = None,
    caller: Annotated[str | None, typer.Option(help="The caller's number")] = None,
    state: Annotated[str, typer.Option(help="Call state as a JSON object")] = "{}",
    events: Annotated[bool, typer.Option(help="Print events (redacted) on stderr")] = False,
) -> None:
    """Run one tool and print its result JSON; exits 0 whatever the tool's outcome."""
    # Imported when the command runs: the runtime brings the HTTP stack, for start-up time.
    import asyncio

    from patchbay.observe import JsonLinesSink
    from patchbay.runtime import ToolCall, ToolRuntime
    from patchbay.spec import CallContext
    from patchbay.state import StateError

    cfg = load_or_exit(config)
    if tool not in cfg.tools:
        fail(f"unknown tool {tool!r}; the config has: {', '.join(sorted(cfg.tools))}")
    if cfg.tools[tool].integration:
        secrets_or_exit(cfg, integration=cfg.tools[tool].integration, tenant=tenant)
    observing = observe_or_exit(cfg, logs=True, runtime=True)
    arguments = _json_object(args, "--args")
    call_state = _json_object(state, "--state")
    ctx = CallContext(id=call_id, tenant=tenant, caller=caller, state=call_state)

    async def run() -> None:
        sinks = [JsonLinesSink(sys.stderr) if events else _NoAnswer(), _Deprecated()]
        async with ToolRuntime(cfg, sinks=sinks, **observing) as runtime:
            result = await runtime.execute(ToolCall(tool, arguments, ctx))
            print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False), flush=True)
            # A one-shot process: background writes (accepted ones, and those being confirmed)
            # are finished within their retry plan before it exits, or they would be lost.
            if not await runtime.drain(_drain_s(cfg)):
                print("warning: background writes were still unfinished at exit", file=sys.stderr)

    try:
        asyncio.run(run())
    except StateError as exc:
        fail(f"state: {exc}")


class _NoAnswer:
    """Says on stderr why an attempt got no answer (host, port, the system's reason): the
    result on stdout keeps only the words the LLM hears."""

    def emit(self, event: Event) -> None:
        if event.kind == "attempt" and "error" in event.extra:
            print(f"patchbay: attempt {event.attempt}: {event.extra['error']}", file=sys.stderr)


class _Deprecated:
    """A warning line on stderr when the API says an endpoint is deprecated or sunset."""

    def emit(self, event: Event) -> None:
        if event.kind == "deprecation":
            where = f"{event.integration} {event.extra.get('endpoint', '')}".strip()
            words = event.extra.get("words") or "deprecated"
            print(f"warning: {where} is {words}", file=sys.stderr)


def _drain_s(cfg: Config) -> float:
    """The longest a background write of this config may take: its confirmation window."""
    spans = [t.idempotency.reconcile_s for t in cfg.tools.values() if t.idempotency]
    return max([120.0, *spans]) + 30.0


def _json_object(text: str, option: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        fail(f"{option} is not JSON: {exc}")
    if not isinstance(value, dict):
        fail(f"{option} must be a JSON object")
    return value
