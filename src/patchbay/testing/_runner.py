"""Running scenarios through the real runtime, with a fault proxy before every integration."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from patchbay.runtime import ToolRuntime
from patchbay.spec import CallContext, Config, Integration
from patchbay.state import MemoryStore
from patchbay.testing._fake import FakeClock
from patchbay.testing._faults import FaultProxy
from patchbay.testing._scenarios import Mismatch, Scenario, Scenarios, Step, subset_mismatches

__all__ = ["RunReport", "ScenarioOutcome", "StepOutcome", "run_scenarios", "used_integrations"]


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """What one step returned and where it differs from what it expects."""

    index: int
    tool: str
    result: Mapping[str, Any]
    mismatches: tuple[Mismatch, ...]
    seconds: float

    @property
    def passed(self) -> bool:
        """Whether the result matched."""
        return not self.mismatches


@dataclass(frozen=True, slots=True)
class ScenarioOutcome:
    """How a scenario went: its steps up to the first failing one, or what stopped it."""

    name: str
    steps: tuple[StepOutcome, ...]
    step_count: int
    seconds: float
    error: str | None = None  # the run itself broke (not a result that differed)

    @property
    def passed(self) -> bool:
        """Whether every step ran and matched."""
        return (
            self.error is None
            and len(self.steps) == self.step_count
            and all(s.passed for s in self.steps)
        )

    @property
    def failed_step(self) -> StepOutcome | None:
        """The step whose result differed, if one did."""
        return next((s for s in self.steps if not s.passed), None)


@dataclass(frozen=True, slots=True)
class RunReport:
    """Every scenario's outcome, in the file's order."""

    outcomes: tuple[ScenarioOutcome, ...]
    seconds: float
    targets: Mapping[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether every scenario passed."""
        return all(o.passed for o in self.outcomes)

    @property
    def failures(self) -> int:
        """How many scenarios failed."""
        return sum(not o.passed for o in self.outcomes)


def used_integrations(
    config: Config, scenarios: Scenarios, only: tuple[str, ...] = ()
) -> list[str]:
    """The integrations the scenarios' tools (those in `only`, if given) send requests to,
    in config order."""
    used = {
        config.tools[step.tool].integration
        for scenario in scenarios.scenarios.values()
        if not only or scenario.name in only
        for step in scenario.steps
        if step.tool in config.tools
    }
    return [name for name in config.integrations if name in used]


def _pointed(integration: Integration, url: str) -> Integration:
    """The integration sending every request (each tenant's too) to `url`."""
    tenants = {
        name: o.model_copy(update={"base_url": url}) if o.base_url else o
        for name, o in integration.tenants.items()
    }
    return integration.model_copy(update={"base_url": url, "tenants": tenants})


def _scenario_config(config: Config, urls: Mapping[str, str], budget_s: float | None) -> Config:
    integrations = {
        name: _pointed(i, urls[name]) if name in urls else i
        for name, i in config.integrations.items()
    }
    tools = config.tools
    if budget_s is not None:
        tools = {n: t.model_copy(update={"budget_s": budget_s}) for n, t in tools.items()}
    return config.model_copy(update={"integrations": integrations, "tools": tools})


async def run_scenarios(
    config: Config,
    scenarios: Scenarios,
    upstreams: Mapping[str, str],
    *,
    only: tuple[str, ...] = (),
    on_outcome: Callable[[ScenarioOutcome], None] | None = None,
) -> RunReport:
    """Run every scenario (or those named in `only`) against the upstream base URLs, by
    integration, each through a fault proxy; `on_outcome` hears of each as it finishes.

    Each scenario gets a runtime of its own on a fresh in-memory state store (so caches,
    breakers and call state never leak between scenarios) whose backoff sleeps return at once;
    budgets and timeouts stay real.
    """
    started = time.perf_counter()
    outcomes: list[ScenarioOutcome] = []
    async with AsyncExitStack() as stack:
        proxies: dict[str, FaultProxy] = {}
        for name, url in upstreams.items():
            proxies[name] = await stack.enter_async_context(FaultProxy(url))
        for scenario in scenarios.scenarios.values():
            if only and scenario.name not in only:
                continue
            outcome = await _run_scenario(config, scenario, proxies)
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
    return RunReport(tuple(outcomes), time.perf_counter() - started, dict(upstreams))


async def _run_scenario(
    config: Config, scenario: Scenario, proxies: Mapping[str, FaultProxy]
) -> ScenarioOutcome:
    started = time.perf_counter()
    urls = {name: proxy.url for name, proxy in proxies.items()}
    cfg = _scenario_config(config, urls, scenario.budget_s)
    spec = scenario.call
    steps: list[StepOutcome] = []
    error = None
    try:
        runtime = ToolRuntime(cfg, sinks=[], sleep=FakeClock().sleep, store=MemoryStore())
        async with runtime:
            ctx = CallContext(
                id=spec.id, tenant=spec.tenant, caller=spec.caller, state=dict(spec.state)
            )
            if spec.start:
                await runtime.start_call(ctx)
            for i, step in enumerate(scenario.steps):
                outcome = await run_step(runtime, ctx, i, step, proxies.get(_target(cfg, step)))
                steps.append(outcome)
                if not outcome.passed:
                    break  # later steps build on this one's result
            await runtime.end_call(ctx)
    except Exception as exc:  # the report names it; one broken scenario must not stop the rest
        error = f"{type(exc).__name__}: {exc}"
    return ScenarioOutcome(
        scenario.name, tuple(steps), len(scenario.steps), time.perf_counter() - started, error
    )


def _target(config: Config, step: Step) -> str:
    tool = config.tools.get(step.tool)
    return tool.integration if tool is not None else ""


async def run_step(
    runtime: ToolRuntime, ctx: CallContext, index: int, step: Step, proxy: FaultProxy | None
) -> StepOutcome:
    """Run one tool call with its faults on the integration's proxy, and match its result."""
    started = time.perf_counter()
    if proxy is not None:
        for fault in step.faults:
            proxy.add(fault)
    try:
        result = (await runtime.call_tool(step.tool, step.args, ctx)).to_dict()
    finally:
        if proxy is not None:
            proxy.clear()
    mismatches = tuple(subset_mismatches(dict(step.expect), result))
    return StepOutcome(index, step.tool, result, mismatches, time.perf_counter() - started)
