"""Reading patchbay.yaml: YAML, ${VAR} interpolation, validation, cross-checks; all mistakes."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from patchbay._errors import ConfigError, ConfigErrors
from patchbay.spec._checks import (
    check_gateway_tenants,
    check_integration,
    check_state,
    check_tool,
)
from patchbay.spec._graphql_checks import check_graphql_tool
from patchbay.spec._imports import import_object
from patchbay.spec._messages import Loc, issues, join_loc
from patchbay.spec._model import DEFER_TOOL_SHAPE, Config, Integration, Tool
from patchbay.spec._proxy import proxy_env
from patchbay.spec._registry import ToolRegistry, load_registry, merge_tools
from patchbay.spec._secrets import check_secret_refs
from patchbay.spec._webhooks import check_completions, check_webhooks

# Hand-written: one regex covers ${VAR}, ${VAR:-default} and the $${ escape, and lets every
# missing variable be reported with its location instead of failing on the first.
_INTERPOLATION = re.compile(
    r"\$\$\{"  # escaped: $${ stands for a literal ${
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
    r"|\$\{(?P<bad>[^}]*)\}?"
)
M = TypeVar("M", bound=BaseModel)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_BOOL = "tag:yaml.org,2002:bool"


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1 surprises: `2024-06-01` stays text, `on`/`no` stay text."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_TIMESTAMP, _BOOL)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Load and check a patchbay.yaml; raise ConfigErrors listing every mistake found."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigErrors(
            [ConfigError(f"cannot read the config file: {exc.strerror or exc}", str(file))]
        ) from None
    return load_config_text(text, base_dir=file.resolve().parent, env=env)


def load_config_text(
    text: str, base_dir: str | Path = ".", env: Mapping[str, str] | None = None
) -> Config:
    """Load a config from YAML text; handlers are imported relative to `base_dir`."""
    folder = str(Path(base_dir).resolve())
    data, errors = _parse(text)
    missing: list[ConfigError] = []
    environ = os.environ if env is None else env
    data = _interpolate(data, environ, (), missing)
    errors += missing
    unfilled = {e.location for e in missing}
    later: list[ConfigError] = []
    registries = _registries(data.pop("python", None), folder, later)
    from_python = {name for r in registries for name in r.integrations()}
    config = _validate(data, folder, later, from_python)
    # A value left empty by a failed interpolation would only repeat the same mistake.
    errors += [e for e in later if e.location not in unfilled]
    if errors:
        raise ConfigErrors(errors)
    assert config is not None  # every path that leaves it None adds an error
    config = config.model_copy(update={"proxy_env": proxy_env(environ)})
    for registry in registries:
        try:
            config = merge_tools(config, registry)
        except ConfigErrors as exc:
            errors += exc.errors
    if errors:
        raise ConfigErrors(errors)
    return config


def load_python_config(ref: str, base_dir: str | Path = ".") -> Config:
    """A config from Python: `module:name` naming a ToolRegistry (with its integrations) or a
    Config, imported with `base_dir` on sys.path."""
    folder = str(Path(base_dir).resolve())
    try:
        found = import_object(ref, folder)
        # the proxy variables are read here, as a YAML config's are when it is loaded
        proxies = proxy_env(os.environ)
        if isinstance(found, Config):
            update: dict[str, Any] = {"proxy_env": found.proxy_env or proxies}
            if found.base_dir == ".":
                update["base_dir"] = folder
            return found.model_copy(update=update)
        if not isinstance(found, ToolRegistry):
            raise ConfigError(f"this is a {type(found).__name__}, not a ToolRegistry or Config")
        return merge_tools(Config(base_dir=folder, proxy_env=proxies), load_registry(ref, folder))
    except ConfigErrors:
        raise
    except ConfigError as exc:
        raise ConfigErrors([_at(exc, ref)]) from None


def _at(error: ConfigError, location: str) -> ConfigError:
    """`error`, located at `location` when it has no location of its own."""
    return error if error.location else ConfigError(error.message, location)


def _registries(given: Any, folder: str, errors: list[ConfigError]) -> list[ToolRegistry]:
    """The `python:` key's ToolRegistry objects, imported from the config's folder."""
    if given is None:
        return []
    if not isinstance(given, list) or not all(isinstance(r, str) and ":" in r for r in given):
        errors.append(ConfigError("expected a list of 'module:registry' references", "python"))
        return []
    found: list[ToolRegistry] = []
    for i, ref in enumerate(given):
        try:
            found.append(load_registry(ref, folder))
        except ConfigErrors as exc:
            errors += [_at(e, f"python[{i}]") for e in exc.errors]
        except ConfigError as exc:
            errors.append(_at(exc, f"python[{i}]"))
    return found


_MERGE = "tag:yaml.org,2002:merge"


class _Loop(Exception):
    """An alias inside the very mapping or list it names: the data would be infinite."""


def _duplicates(
    node: yaml.Node | None, loc: Loc, seen: set[int], open_: set[int]
) -> Iterator[ConfigError]:
    """A ConfigError for every key given twice in one mapping, anywhere in the document.

    YAML loaders keep the last of two equal keys, so a second tool with the name of the first
    would silently replace it; both places are named instead, with their lines. Raises _Loop
    for an alias that names a node it sits in.
    """
    if node is None:
        return
    if id(node) in open_:
        raise _Loop(join_loc(loc))
    if id(node) in seen:  # an alias repeats a node already walked
        return
    seen.add(id(node))
    open_.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE or not isinstance(key_node, yaml.ScalarNode):
                yield from _duplicates(value_node, loc, seen, open_)
                continue
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key in first:
                lines = (
                    f"on line {line}" if first[key] == line else f"(lines {first[key]} and {line})"
                )
                yield ConfigError(
                    f"given twice {lines}; each key may appear once", join_loc((*loc, key))
                )
            else:
                first[key] = line
            yield from _duplicates(value_node, (*loc, key), seen, open_)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicates(item, (*loc, i), seen, open_)
    open_.discard(id(node))


def _parse(text: str) -> tuple[dict[str, Any], list[ConfigError]]:
    """The document's data, and every key it gives twice."""
    try:
        loader = _Loader(text)  # a SafeLoader subclass: safe
        try:
            node = loader.get_single_node()
            repeated = list(_duplicates(node, (), set(), set()))
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigErrors([ConfigError(f"YAML syntax error: {problem}", where)]) from None
    except yaml.YAMLError as exc:
        raise ConfigErrors([ConfigError(f"YAML syntax error: {exc}")]) from None
    except _Loop as loop:
        message = "an alias here names a mapping or list it is inside of; the data would be endless"
        raise ConfigErrors([ConfigError(message, str(loop))]) from None
    except RecursionError:
        raise ConfigErrors([ConfigError("the config nests too deeply to read")]) from None
    if data is None:
        raise ConfigErrors([ConfigError("the config is empty")])
    if not isinstance(data, dict):
        raise ConfigErrors([ConfigError("the config must be a mapping of keys to values")])
    return data, repeated


def _interpolate(value: Any, env: Mapping[str, str], loc: Loc, errors: list[ConfigError]) -> Any:
    """Fill ${VAR} and ${VAR:-default} in every string value; mapping keys become text."""
    if isinstance(value, str):
        return _fill(value, env, loc, errors)
    if isinstance(value, dict):
        return {_key(k): _interpolate(v, env, (*loc, _key(k)), errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, (*loc, i), errors) for i, v in enumerate(value)]
    return value


def _key(key: Any) -> str:
    # YAML reads `404:` as an int; config keys (e.g. upstream error codes) are always text.
    if isinstance(key, bool):
        return "true" if key else "false"
    return key if isinstance(key, str) else str(key)


def _fill(text: str, env: Mapping[str, str], loc: Loc, errors: list[ConfigError]) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name = match.group("name")
        if name is None:
            bad = match.group("bad")
            errors.append(
                ConfigError(
                    f"bad interpolation ${{{bad}}}; write ${{NAME}} or ${{NAME:-default}}",
                    join_loc(loc),
                )
            )
            return ""
        value = env.get(name)
        if value:
            return value
        default = match.group("default")
        if default is not None:
            return default
        if value is not None:
            return value
        errors.append(
            ConfigError(
                f"environment variable {name} is not set "
                f"(write ${{{name}:-default}} to give a default)",
                join_loc(loc),
            )
        )
        return ""

    return _INTERPOLATION.sub(one, text)


class _Checked(NamedTuple, Generic[M]):
    valid: M | None  # the entry, when it validated
    partial: M | None  # else a best-effort copy without the broken keys, for cross-checks
    broken: list[list[int | str]]  # paths of the broken keys


# A tool's shape (request or handler, integration) is checked by check_tool, with the rest.
_CONTEXT = {DEFER_TOOL_SHAPE: True}


def _model(cls: type[M], data: Any, where: Loc, errors: list[ConfigError]) -> _Checked[M]:
    try:
        entry = cls.model_validate(data, context=_CONTEXT)
        return _Checked(entry, entry, [])
    except ValidationError as exc:
        found = issues(exc, cls)
    errors += [ConfigError(msg, join_loc((*where, *path))) for path, msg in found]
    broken = [path for path, _ in found]
    return _Checked(None, _pruned(cls, data, broken), broken)


def _pruned(cls: type[M], data: Any, paths: list[list[int | str]]) -> M | None:
    """`data` without the keys that failed, validated again; None when that cannot work.

    Lets one pass report a typo and, say, an unknown placeholder of the same tool. A broken
    parameter becomes a plain string parameter, so placeholders naming it stay known.
    """
    if not isinstance(data, dict):
        return None
    data = copy.deepcopy(data)
    for path in paths:
        if cls is Integration:
            path = path[:1]  # every integration key but base_url is optional
        if len(path) == 2 and path[0] == "parameters" and isinstance(data["parameters"], dict):
            data["parameters"][path[1]] = {}
            continue
        node: Any = data
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not path or not isinstance(node, dict) or path[-1] not in node:
            return None
        del node[path[-1]]
    try:
        return cls.model_validate(data, context=_CONTEXT)
    except ValidationError:
        return None


def _semantics_changed(paths: list[list[int | str]]) -> bool:
    """Whether pruning may have turned a write into a read or back."""
    return any(p[:1] == ["write"] or p[:2] == ["request", "method"] for p in paths)


def _named(section: str, data: Any, errors: list[ConfigError]) -> dict[str, Any]:
    """A section's raw entries, each with `name` filled from its key."""
    raw = data.get(section, {})
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        errors.append(ConfigError(f"expected a mapping of names to {section}", section))
        return {}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            given = value.get("name", key)
            if given != key:
                errors.append(
                    ConfigError(f"name {given!r} differs from its key {key!r}", f"{section}.{key}")
                )
            value = {**value, "name": key}
        out[key] = value
    return out


def _validate(
    data: dict[str, Any], folder: str, errors: list[ConfigError], from_python: set[str]
) -> Config | None:
    """Validate each integration and tool on its own, so one broken entry hides no other.

    `from_python`: integrations the config's ToolRegistry objects bring, which tools may name.
    """
    for internal in ("base_dir", "proxy_env"):
        if internal in data:
            errors.append(ConfigError(f"unknown key {internal!r}", internal))
    raw_integrations = _named("integrations", data, errors)
    raw_tools = _named("tools", data, errors)
    top = {
        k: v for k, v in data.items() if k not in ("integrations", "tools", "base_dir", "proxy_env")
    }
    shell = _model(Config, {**top, "base_dir": folder}, (), errors)
    if "state" in top:
        errors += check_state(top["state"])
    integrations: dict[str, Integration] = {}
    for key, value in raw_integrations.items():
        one = _model(Integration, value, ("integrations", key), errors)
        if one.valid is not None:
            integrations[key] = one.valid
        if one.partial is not None:
            errors += check_integration(one.partial, f"integrations.{key}")
    if shell.valid is not None and len(integrations) == len(raw_integrations):
        errors += check_gateway_tenants(shell.valid.gateway.auth, integrations)
    tools: dict[str, Tool] = {}
    for key, value in raw_tools.items():
        checked = _model(Tool, value, ("tools", key), errors)
        if checked.partial is None:
            continue
        known = raw_integrations.keys() | from_python
        found = check_tool(checked.partial, f"tools.{key}", known, folder)
        found += check_graphql_tool(checked.partial, f"tools.{key}", integrations)
        if checked.valid is not None:
            tools[key] = checked.valid
        elif _semantics_changed(checked.broken):
            found = [e for e in found if not e.location.endswith((".cache", ".mode", ".prefetch"))]
        errors += found
    if shell.valid is not None:  # expressions, templates, after_call tools; tools' correlate
        correlations = {k: t.correlate for k, t in tools.items() if t.correlate}
        errors += check_webhooks(shell.valid.webhooks, raw_tools.keys(), correlations)
        done = {
            k: (t.completion, t.correlate, t.budget_s) for k, t in tools.items() if t.completion
        }
        errors += check_completions(shell.valid.webhooks, done)
    if errors or shell.valid is None:
        return None
    config = Config.model_validate(
        {**top, "integrations": integrations, "tools": tools, "base_dir": folder}
    )
    errors += check_secret_refs(config)  # vault:/aws-sm: shape, and their secrets block
    return None if errors else config
