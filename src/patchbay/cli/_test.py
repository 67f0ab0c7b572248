"""`patchbay test`: run scripted conversations through the real runtime, with faults injected."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from patchbay.cli._app import (
    CONFIG_HELP,
    _observed,
    _used_by,
    app,
    fail,
    load_or_exit,
    observe_or_exit,
)

if TYPE_CHECKING:
    from patchbay.spec import Config
    from patchbay.testing._runner import RunReport, ScenarioOutcome
    from patchbay.testing._scenarios import Scenarios

_AGAINST_HELP = (
    "mock (the default: patchbay's mock of the config), a base URL for every integration, "
    "or NAME=URL for one integration (repeat for several)"
)


@app.command("test")
def test_command(
    scenarios: Annotated[str, typer.Argument(help="The scenario file (YAML)")],
    config: Annotated[str, typer.Option("--config", "-c", help=CONFIG_HELP)] = "patchbay.yaml",
    against: Annotated[list[str] | None, typer.Option(metavar="TARGET", help=_AGAINST_HELP)] = None,
    junit: Annotated[
        str | None, typer.Option(metavar="FILE", help="Also write JUnit XML to this file")
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option(metavar="NAME", help="Run only this scenario (repeat)")
    ] = None,
) -> None:
    """Run scenario tests: exit 0 when all pass, 1 when any fails, 2 for bad input."""
    # lazy: start-up time (the scenarios bring the runtime, the fault proxy and aiohttp)
    import asyncio

    from patchbay._errors import ConfigErrors
    from patchbay.testing._runner import used_integrations
    from patchbay.testing._scenarios import load_scenarios

    cfg = load_or_exit(config)
    try:
        loaded = load_scenarios(scenarios, cfg)
    except ConfigErrors as exc:
        for err in exc.errors:
            print(f"patchbay: {err}", file=sys.stderr)
        raise typer.Exit(2) from None
    unknown = sorted(set(only or ()) - set(loaded.scenarios))
    if unknown:
        fail(f"--only {unknown[0]!r}: no such scenario in {scenarios}")
    used = used_integrations(cfg, loaded, tuple(only or ()))
    upstreams = _upstreams(against or ["mock"], used, set(cfg.integrations))
    _secrets_or_exit(cfg, loaded, used, mock=upstreams is None)
    observe_or_exit(cfg, logs=True)
    target = "the mock" if upstreams is None else ", ".join(sorted(set(upstreams.values())))
    count = len(set(only)) if only else len(loaded.scenarios)
    noun = "scenario" if count == 1 else "scenarios"
    print(f"patchbay test: {count} {noun} from {scenarios} against {target}", flush=True)
    report = asyncio.run(_run(cfg, loaded, used, upstreams, tuple(only or ())))
    print(_summary(report), flush=True)
    if junit is not None:
        _junit(report, junit)
    raise typer.Exit(0 if report.passed else 1)


def _upstreams(values: list[str], used: list[str], known: set[str]) -> dict[str, str] | None:
    """The upstream base URL of each used integration, or None for the mock."""
    if values == ["mock"]:
        return None
    if "mock" in values:
        fail("--against mock runs everything against the mock; give it alone")
    if len(values) == 1 and "=" not in values[0]:
        return dict.fromkeys(used, _url(values[0], values[0]))
    named: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep:
            fail(f"--against {value!r}: with several, each is NAME=URL")
        if name not in known:
            fail(f"--against {value!r}: no integration {name!r}; the config has: "
                 + ", ".join(sorted(known)))  # fmt: skip
        named[name] = _url(url, value)
    missing = [n for n in used if n not in named]
    if missing:
        fail(f"--against names no URL for {', '.join(missing)}, which the scenarios call")
    return {n: named[n] for n in used}


def _url(value: str, given: str) -> str:
    from urllib.parse import urlsplit  # lazy: start-up time

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(f"--against {given!r}: not a base URL like http://127.0.0.1:8042")
    return value.rstrip("/")


def _secrets_or_exit(cfg: Config, loaded: Scenarios, used: list[str], *, mock: bool) -> None:
    """Every secret the scenarios' calls need resolves, or each that does not is printed."""
    import asyncio  # lazy: start-up time

    from patchbay.http import check_secrets  # lazy: start-up time

    tenants = {s.call.tenant for s in loaded.scenarios.values()}
    errors = [
        e
        for e in asyncio.run(check_secrets(cfg))
        if _observed(e) or any(_used_by(e.location, i, t) for i in used for t in tenants)
    ]
    for err in errors:
        print(f"patchbay: {err}", file=sys.stderr)
    if errors and mock:
        print("patchbay: the mock accepts any credential: set these to any value", file=sys.stderr)
    if errors:
        raise typer.Exit(2)


async def _run(
    cfg: Config,
    loaded: Scenarios,
    used: list[str],
    upstreams: dict[str, str] | None,
    only: tuple[str, ...],
) -> RunReport:
    from patchbay.testing import MockApi  # lazy: start-up time
    from patchbay.testing._runner import run_scenarios  # lazy: start-up time

    if upstreams is not None:
        return await run_scenarios(cfg, loaded, upstreams, only=only, on_outcome=_progress)
    async with MockApi(cfg) as mock:
        urls = {name: mock.url_for(name) for name in used}
        return await run_scenarios(cfg, loaded, urls, only=only, on_outcome=_progress)


def _progress(outcome: ScenarioOutcome) -> None:
    from patchbay.testing._report import failure_text, progress_line  # lazy: start-up time

    print(f"  {progress_line(outcome)}", flush=True)
    if not outcome.passed:
        for line in failure_text(outcome).splitlines():
            print(f"        {line}", flush=True)


def _summary(report: RunReport) -> str:
    from patchbay.testing._report import summary_line  # lazy: start-up time

    return summary_line(report)


def _junit(report: RunReport, path: str) -> None:
    from patchbay.testing._report import write_junit  # lazy: start-up time

    try:
        write_junit(report, path)
    except OSError as exc:
        fail(f"cannot write the JUnit report to {path}: {exc.strerror or exc}")
