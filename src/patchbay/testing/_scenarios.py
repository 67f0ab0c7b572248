"""Scenario files: scripted conversations of tool calls, their expected results and the faults
injected on the way; loading them with every mistake located, and matching results.

```yaml
scenarios:
  pay_bill:
    call: {id: t-1, caller: "+15551234567"}
    steps:
      - tool: lookup_customer_invoices
        args: {phone: "555-123-4567"}
        expect: {ok: true, result: {customer_name: Jamie Patel, invoice_count: 1}}
      - tool: create_payment
        args: {invoice_id: inv_1001, amount: 24700, payment_method_id: pm_card_visa4242}
        faults: [{status: 500, times: 1}]
        expect: {ok: true, meta: {attempts: 2}}
```
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from patchbay._errors import ConfigError, ConfigErrors
from patchbay.spec import Config
from patchbay.testing._faults import Fault

__all__ = [
    "Mismatch",
    "Scenario",
    "ScenarioCall",
    "Scenarios",
    "Step",
    "load_scenarios",
    "subset_mismatches",
]

_Path = tuple[str | int, ...]
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_BOOL = "tag:yaml.org,2002:bool"
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
_TOP_KEYS = frozenset({"scenarios"})
_SCENARIO_KEYS = frozenset({"call", "steps", "budget_s", "description"})
_CALL_KEYS = frozenset({"id", "caller", "tenant", "state", "start"})
_STEP_KEYS = frozenset({"tool", "args", "expect", "faults"})
_EXPECT_KEYS = frozenset({"ok", "result", "error", "say", "meta"})


class _Loader(yaml.SafeLoader):
    """SafeLoader as the config reads YAML: `2024-06-01` and `on`/`no` stay text."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_TIMESTAMP, _BOOL)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass(frozen=True, slots=True)
class ScenarioCall:
    """The phone call a scenario's tool calls belong to."""

    id: str
    caller: str | None = None
    tenant: str | None = None
    state: Mapping[str, Any] = field(default_factory=dict)
    start: bool = False  # run the call-start prefetches before the first step


@dataclass(frozen=True, slots=True)
class Step:
    """One tool call of a scenario: its arguments, the faults on its way, what it must return."""

    tool: str
    args: Mapping[str, Any]
    expect: Mapping[str, Any]
    faults: tuple[Fault, ...] = ()
    # The faults as written, for documentation (`{status: 500, times: 1}`).
    fault_mappings: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Scenario:
    """A scripted conversation: one call, its steps in order."""

    name: str
    call: ScenarioCall
    steps: tuple[Step, ...]
    budget_s: float | None = None  # every tool's budget in this scenario (short hang steps)
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Scenarios:
    """A scenario file: its scenarios by name, in the file's order."""

    path: str
    scenarios: Mapping[str, Scenario]


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Where a result differs from what a step expects, at a JSON path like `$.meta.attempts`."""

    path: str
    expected: Any
    got: Any
    missing: bool = False  # the key is absent from the result

    def __str__(self) -> str:
        want = _json(self.expected)
        if self.missing:
            return f"{self.path}: expected {want}, but the result has no such key"
        if isinstance(self.expected, list) and isinstance(self.got, list):
            return (
                f"{self.path}: expected a list of {len(self.expected)}, "
                f"got a list of {len(self.got)}: {_json(self.got)}"
            )
        return f"{self.path}: expected {want}, got {_json(self.got)}"


def _json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= 300 else text[:300] + "…"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def subset_mismatches(expected: Any, got: Any, path: str = "$") -> list[Mismatch]:
    """Where `got` fails to match `expected`, empty when it matches.

    Mappings match when every expected key matches (other keys are ignored), lists when they
    have the same length and match item by item, numbers by value (1 matches 1.0, never true),
    everything else by equality.
    """
    if isinstance(expected, Mapping):
        if not isinstance(got, Mapping):
            return [Mismatch(path, expected, got)]
        found: list[Mismatch] = []
        for key, want in expected.items():
            where = f"{path}.{key}" if _NAME.fullmatch(str(key)) else f"{path}[{key!r}]"
            if key not in got:
                found.append(Mismatch(where, want, None, missing=True))
            else:
                found.extend(subset_mismatches(want, got[key], where))
        return found
    if isinstance(expected, list):
        if not isinstance(got, list) or len(got) != len(expected):
            return [Mismatch(path, expected, got)]
        return [m for i, (w, g) in enumerate(zip(expected, got, strict=True))
                for m in subset_mismatches(w, g, f"{path}[{i}]")]  # fmt: skip
    if _is_number(expected) and _is_number(got):
        return [] if expected == got else [Mismatch(path, expected, got)]
    if type(expected) is not type(got) or expected != got:
        return [Mismatch(path, expected, got)]
    return []


# --- loading -------------------------------------------------------------------------------


class _Problems:
    """Every mistake found, each located by its dotted path and its line in the file."""

    def __init__(self, file: str, lines: Mapping[_Path, int]) -> None:
        self.file = file
        self.lines = lines
        self.errors: list[ConfigError] = []

    def add(self, where: _Path, message: str) -> None:
        line = None
        for end in range(len(where), -1, -1):
            line = self.lines.get(where[:end])
            if line is not None:
                break
        place = f"{self.file}:{line}" if line is not None else self.file
        self.errors.append(ConfigError(message, f"{place}: {_dotted(where)}" if where else place))


def _dotted(where: _Path) -> str:
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _node_lines(node: yaml.Node | None, lines: dict[_Path, int]) -> list[tuple[_Path, int]]:
    """The line of every key and item, by path, and every key given twice in its mapping
    (YAML keeps the last silently: a scenario would vanish). Walked without recursion."""
    stack: list[tuple[yaml.Node, _Path]] = [(node, ())] if node is not None else []
    seen: set[int] = set()
    twice: list[tuple[_Path, int]] = []
    while stack:
        current, path = stack.pop()
        if id(current) in seen:
            continue  # an alias: its lines are those of the first place it appears
        seen.add(id(current))
        lines.setdefault(path, current.start_mark.line + 1)
        if isinstance(current, yaml.MappingNode):
            keys: set[str] = set()
            for key, value in current.value:
                name = str(key.value)
                child = (*path, name)
                if name in keys:
                    twice.append((child, key.start_mark.line + 1))
                keys.add(name)
                lines.setdefault(child, key.start_mark.line + 1)
                stack.append((value, child))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((item, (*path, i)) for i, item in enumerate(current.value))
    return twice


def _parse(text: str, file: str) -> tuple[Any, dict[_Path, int]]:
    lines: dict[_Path, int] = {}
    try:
        loader = _Loader(text)  # a SafeLoader subclass: safe
        try:
            node = loader.get_single_node()
            twice = _node_lines(node, lines)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{file}:{mark.line + 1}" if mark else file
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigErrors([ConfigError(f"YAML syntax error: {problem}", where)]) from None
    except yaml.YAMLError as exc:
        raise ConfigErrors([ConfigError(f"YAML syntax error: {exc}", file)]) from None
    except RecursionError:
        raise ConfigErrors([ConfigError("the file nests too deeply to read", file)]) from None
    if twice:
        message = "given twice; each key may appear once"
        raise ConfigErrors(
            [ConfigError(message, f"{file}:{line}: {_dotted(where)}") for where, line in twice]
        )
    try:
        json.dumps(data, default=str)  # what a step sends must be JSON: finite, not circular
    except (ValueError, RecursionError):
        message = "an alias here names a mapping or list it is inside of, or nests too deeply"
        raise ConfigErrors([ConfigError(message, file)]) from None
    return data, lines


def load_scenarios(path: str | Path, config: Config | None = None) -> Scenarios:
    """Read a scenario file; raise ConfigErrors listing every mistake with its file:line and
    location. With `config`, tool names and faults are checked against it too.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        message = f"cannot read the scenario file: {exc.strerror or exc}"
        raise ConfigErrors([ConfigError(message, file)]) from None
    except UnicodeDecodeError:
        raise ConfigErrors([ConfigError("the scenario file is not UTF-8 text", file)]) from None
    data, lines = _parse(text, file)
    problems = _Problems(file, lines)
    scenarios: dict[str, Scenario] = {}
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), dict):
        problems.add((), "a scenario file is a mapping with `scenarios:`, each scenario by name")
    else:
        _unknown(problems, data, _TOP_KEYS, ())
        if not data["scenarios"]:
            problems.add(("scenarios",), "there are no scenarios")
        for name, body in data["scenarios"].items():
            scenario = _scenario(problems, str(name), body, config)
            if scenario is not None:
                scenarios[str(name)] = scenario
    if problems.errors:
        raise ConfigErrors(problems.errors)
    return Scenarios(path=file, scenarios=scenarios)


def _unknown(
    problems: _Problems, data: Mapping[Any, Any], known: frozenset[str], where: _Path
) -> None:
    for key in data:
        if key not in known:
            words = ", ".join(sorted(known))
            problems.add((*where, str(key)), f"unknown key {str(key)!r}; known keys: {words}")


def _scenario(problems: _Problems, name: str, body: Any, config: Config | None) -> Scenario | None:
    where: _Path = ("scenarios", name)
    if not isinstance(body, dict):
        problems.add(where, "a scenario is a mapping with `call` and `steps`")
        return None
    before = len(problems.errors)
    _unknown(problems, body, _SCENARIO_KEYS, where)
    call = _call(problems, name, body.get("call"), (*where, "call"))
    budget = body.get("budget_s")
    if budget is not None and (not _is_number(budget) or not 0 < budget <= 120):
        problems.add((*where, "budget_s"), "budget_s must be seconds, more than 0 and at most 120")
    description = body.get("description")
    if description is not None and not isinstance(description, str):
        problems.add((*where, "description"), "description must be text")
    raw_steps = body.get("steps")
    steps: list[Step] = []
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.add((*where, "steps"), "steps must be a list of at least one tool call")
    else:
        for i, raw in enumerate(raw_steps):
            step = _step(problems, raw, (*where, "steps", i), config)
            if step is not None:
                steps.append(step)
    if len(problems.errors) > before or call is None:
        return None
    return Scenario(
        name=name,
        call=call,
        steps=tuple(steps),
        budget_s=float(budget) if budget is not None else None,
        description=description,
    )


def _call(problems: _Problems, name: str, raw: Any, where: _Path) -> ScenarioCall | None:
    if raw is None:
        return ScenarioCall(id=f"scenario-{name}")
    if not isinstance(raw, dict):
        problems.add(where, "call must be a mapping like {id: t-1, caller: '+15551234567'}")
        return None
    _unknown(problems, raw, _CALL_KEYS, where)
    ok = True
    for key in ("id", "caller", "tenant"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            problems.add((*where, key), f"{key} must be non-empty text")
            ok = False
    state = raw.get("state", {})
    if not isinstance(state, dict):
        problems.add((*where, "state"), "state must be a mapping")
        ok = False
    start = raw.get("start", False)
    if not isinstance(start, bool):
        problems.add((*where, "start"), "start must be true or false")
        ok = False
    if not ok:
        return None
    return ScenarioCall(
        id=raw.get("id") or f"scenario-{name}",
        caller=raw.get("caller"),
        tenant=raw.get("tenant"),
        state=state,
        start=start,
    )


def _step(problems: _Problems, raw: Any, where: _Path, config: Config | None) -> Step | None:
    # Each step is a tool call today. A webhook delivery between steps (once patchbay receives
    # webhooks) is another kind of step: recognise its key here, parse it into its own record,
    # and deliver it where the runner runs steps (`_runner.run_step`).
    if not isinstance(raw, dict) or "tool" not in raw:
        problems.add(where, "a step is a mapping with `tool`, `args`, `expect` and `faults`")
        return None
    before = len(problems.errors)
    _unknown(problems, raw, _STEP_KEYS, where)
    tool_name = raw["tool"]
    tool = None
    if not isinstance(tool_name, str) or not tool_name:
        problems.add((*where, "tool"), "tool must be a tool's name")
    elif config is not None:
        tool = config.tools.get(tool_name)
        if tool is None:
            known = ", ".join(sorted(config.tools)) or "none"
            problems.add((*where, "tool"), f"unknown tool {tool_name!r}; the config has: {known}")
    args = raw.get("args", {})
    if not isinstance(args, dict):
        problems.add((*where, "args"), "args must be a mapping of argument names to values")
    expect = raw.get("expect", {})
    if not isinstance(expect, dict):
        problems.add(
            (*where, "expect"), "expect must be a mapping with ok, result, error, say, meta"
        )
    else:
        _expectation(problems, expect, (*where, "expect"))
    faults = _faults(problems, raw.get("faults", []), (*where, "faults"))
    if faults and tool is not None and not tool.integration:
        problems.add((*where, "faults"), f"{tool.name} sends no request: faults cannot reach it")
    if len(problems.errors) > before:
        return None
    return Step(
        tool=tool_name,
        args=args,
        expect=expect,
        faults=tuple(f for f, _ in faults),
        fault_mappings=tuple(m for _, m in faults),
    )


def _expectation(problems: _Problems, expect: Mapping[Any, Any], where: _Path) -> None:
    _unknown(problems, expect, _EXPECT_KEYS, where)
    if "ok" in expect and not isinstance(expect["ok"], bool):
        problems.add((*where, "ok"), "ok must be true or false")
    if "say" in expect and expect["say"] is not None and not isinstance(expect["say"], str):
        problems.add((*where, "say"), "say must be text or null")
    for key in ("error", "meta"):
        value = expect.get(key)
        if key in expect and value is not None and not isinstance(value, dict):
            problems.add(
                (*where, key), f"{key} must be a mapping (e.g. {{code: not_found}}) or null"
            )


def _faults(problems: _Problems, raw: Any, where: _Path) -> list[tuple[Fault, Mapping[str, Any]]]:
    if not isinstance(raw, list):
        problems.add(where, "faults must be a list like [{status: 500, times: 1}]")
        return []
    found = []
    for i, item in enumerate(raw):
        try:
            found.append((Fault.from_mapping(item), item))
        except ValueError as exc:
            problems.add((*where, i), str(exc))
    return found
