"""Tools written in Python: a decorator that turns an async handler's signature into a Tool."""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import ValidationError

from patchbay._errors import ConfigError, ConfigErrors
from patchbay.spec._checks import check_integration, check_tool
from patchbay.spec._imports import Handler, import_object, is_async_callable, load_handler
from patchbay.spec._messages import translate
from patchbay.spec._model import (
    CacheSpec,
    Config,
    Example,
    Idempotency,
    Integration,
    Param,
    QuotaSpec,
    ResponseSpec,
    RetrySpec,
    Rule,
    Say,
    Tool,
)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_ARRAYS = (list, tuple, set, frozenset, Sequence, typing.Sequence)
_OBJECTS = (dict, Mapping, typing.Mapping)


class ToolRegistry:
    """Python tools, each an async handler registered with `@registry.tool(...)`.

    `integrations` (optional) are the APIs they call, as in a config's `integrations:`: with
    them the registry is a whole config (`patchbay tools -c module:registry`).
    """

    def __init__(
        self, *, integrations: Mapping[str, Integration | Mapping[str, Any]] | None = None
    ) -> None:
        self._tools: dict[str, Tool] = {}
        self._handlers: dict[str, Handler] = {}
        self._integrations = {k: _integration(k, v) for k, v in (integrations or {}).items()}

    def tool(
        self,
        *,
        integration: str,
        description: str | None = None,
        name: str | None = None,
        parameters: Mapping[str, Param | Mapping[str, Any]] | None = None,
        require_one_of: Sequence[str] = (),
        require_all_of: Sequence[str] = (),
        rules: Sequence[Rule | Mapping[str, Any]] = (),
        validators: Sequence[str] = (),
        response: ResponseSpec | Mapping[str, Any] | None = None,
        say: Say | Mapping[str, str] | None = None,
        budget_s: float | timedelta | None = None,
        cache: CacheSpec | Mapping[str, Any] | None = None,
        idempotency: Idempotency | Mapping[str, Any] | None = None,
        retry: RetrySpec | Mapping[str, Any] | None = None,
        quota: QuotaSpec | Mapping[str, Any] | None = None,
        mode: Literal["sync", "background"] = "sync",
        prefetch: bool = False,
        write: bool | None = None,
        when: str | None = None,
        examples: Sequence[Example | Mapping[str, Any]] = (),
    ) -> Callable[[F], F]:
        """Register an async handler as a tool; parameters come from its type hints."""

        def register(func: F) -> F:
            tool_name = name or func.__name__
            where = f"tools.{tool_name}"
            text = description or _doc(func)
            if not is_async_callable(func):
                raise _fail("a tool handler must be an async function", where)
            if tool_name in self._tools:
                raise _fail("a tool of this name is already registered", where)
            if not text:
                raise _fail("a tool needs a description (or a docstring)", f"{where}.description")
            if isinstance(budget_s, timedelta):
                budget: float | None = budget_s.total_seconds()
            else:
                budget = budget_s
            fields: dict[str, Any] = {
                "name": tool_name,
                "integration": integration,
                "description": text,
                "parameters": (
                    dict(parameters) if parameters is not None else infer_parameters(func)
                ),
                "require": (
                    {"one_of": tuple(require_one_of), "all_of": tuple(require_all_of)}
                    if require_one_of or require_all_of
                    else None
                ),
                "rules": tuple(rules),
                "validators": tuple(validators),
                "handler": f"{func.__module__}:{func.__qualname__}",
                "response": response,
                "say": say,
                "budget_s": budget,
                "cache": cache,
                "idempotency": idempotency,
                "retry": retry,
                "quota": quota,
                "mode": mode,
                "prefetch": prefetch,
                "write": write,
                "when": when,
                "examples": tuple(examples) or None,
            }
            try:
                tool = Tool.model_validate({k: v for k, v in fields.items() if v is not None})
            except ValidationError as exc:
                raise ConfigErrors(translate(exc, Tool, ("tools", tool_name))) from None
            errors = check_tool(tool, where, None, None, import_handler=False)
            errors += _unaccepted(func, tool, where)
            if errors:
                raise ConfigErrors(errors)
            self._tools[tool_name] = tool
            self._handlers[tool_name] = func
            return func

        return register

    def tools(self) -> dict[str, Tool]:
        """The registered tools by name."""
        return dict(self._tools)

    def integrations(self) -> dict[str, Integration]:
        """The integrations given to the registry, by name."""
        return dict(self._integrations)

    def handler(self, name: str) -> Handler:
        """The handler function registered for tool `name`."""
        try:
            return self._handlers[name]
        except KeyError:
            raise KeyError(f"no Python tool named {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)


def merge_tools(config: Config, registry: ToolRegistry) -> Config:
    """A copy of `config` with the registry's tools and integrations added; a clash is an error."""
    errors: list[ConfigError] = []
    integrations = registry.integrations()
    for name in integrations.keys() & config.integrations.keys():
        errors.append(
            ConfigError(
                "this integration is defined both in the config and in Python",
                f"integrations.{name}",
            )
        )
    known = {**config.integrations, **integrations}
    tools = registry.tools()
    for tool_name, tool in tools.items():
        where = f"tools.{tool_name}"
        if tool_name in config.tools:
            errors.append(
                ConfigError("this tool is defined both in the config and in Python", where)
            )
        errors += check_tool(tool, where, known.keys(), config.base_dir, import_handler=False)
    if errors:
        raise ConfigErrors(errors)
    return config.model_copy(update={"integrations": known, "tools": {**config.tools, **tools}})


def load_registry(ref: str, base_dir: str) -> ToolRegistry:
    """The ToolRegistry that `module:name` names, imported with `base_dir` on sys.path.

    Each handler must import back by its own name (a module-level function), since every
    command, and each gateway replica, finds it that way.
    """
    found = import_object(ref, base_dir)
    if not isinstance(found, ToolRegistry):
        raise ConfigErrors(
            [ConfigError(f"{ref!r} is a {type(found).__name__}, not a ToolRegistry")]
        )
    errors: list[ConfigError] = []
    for name, tool in found.tools().items():
        if tool.handler is None:
            continue
        try:
            same = import_object(tool.handler, base_dir) is found.handler(name)
        except ConfigError:
            same = False
        if not same:
            errors.append(
                ConfigError(
                    f"the handler cannot be imported as {tool.handler!r}; define it at the top "
                    "level of a module",
                    f"tools.{name}.handler",
                )
            )
    if errors:
        raise ConfigErrors(errors)
    return found


def resolve_handler(
    config: Config, tool: Tool, registry: ToolRegistry | None = None
) -> Callable[..., Awaitable[Any]]:
    """The async function behind a handler tool: from `registry`, else imported (cached)."""
    if registry is not None and tool.name in registry:
        return registry.handler(tool.name)
    if tool.handler is None:
        raise ConfigError("this tool declares a request, not a handler", f"tools.{tool.name}")
    try:
        return load_handler(config.base_dir, tool.handler)
    except ConfigError as exc:
        raise ConfigError(exc.message, f"tools.{tool.name}.handler") from None


def _integration(name: str, given: Integration | Mapping[str, Any]) -> Integration:
    """One integration of a registry, named by its key and checked like a config's."""
    where = f"integrations.{name}"
    try:
        if isinstance(given, Integration):
            found = given.model_copy(update={"name": name})
        else:
            found = Integration.model_validate({**given, "name": name})
    except ValidationError as exc:
        raise ConfigErrors(translate(exc, Integration, ("integrations", name))) from None
    errors = check_integration(found, where)
    if errors:
        raise ConfigErrors(errors)
    return found


def _fail(message: str, location: str) -> ConfigErrors:
    return ConfigErrors([ConfigError(message, location)])


def _doc(func: Callable[..., Any]) -> str:
    """The first paragraph of the docstring: what the LLM reads to decide when to call."""
    doc = inspect.getdoc(func) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def _params_of(func: Callable[..., Any]) -> list[inspect.Parameter]:
    """The signature's parameters after the first positional one, the call context."""
    where = f"tools.{getattr(func, '__name__', '?')}"
    params = list(inspect.signature(func).parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not params or params[0].kind not in positional:
        raise ConfigErrors([ConfigError("a handler takes the call context first", where)])
    rest = params[1:]
    for p in rest:
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL):
            raise ConfigErrors(
                [ConfigError(f"parameter {p.name!r} cannot be given by name", where)]
            )
    return rest


def _unaccepted(func: Callable[..., Any], tool: Tool, where: str) -> list[ConfigError]:
    """Explicit parameters the function would not accept as keyword arguments."""
    params = _params_of(func)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return []
    accepted = {p.name for p in params}
    return [
        ConfigError("the handler takes no such argument", f"{where}.parameters.{name}")
        for name in tool.parameters
        if name not in accepted
    ]


class _Hints:
    """Just the annotations to resolve, so the context's (maybe TYPE_CHECKING-only) is skipped."""

    def __init__(self, annotations: dict[str, Any], module_globals: dict[str, Any]) -> None:
        self.__annotations__ = annotations
        self.__globals__ = module_globals


def infer_parameters(func: Callable[..., Any]) -> dict[str, Param]:
    """Parameters from a handler's signature: type hints, defaults and Annotated Param(...)."""
    where = f"tools.{getattr(func, '__name__', '?')}"
    params = [p for p in _params_of(func) if p.kind is not inspect.Parameter.VAR_KEYWORD]
    raw = {p.name: p.annotation for p in params if p.annotation is not inspect.Parameter.empty}
    try:
        hints = typing.get_type_hints(
            _Hints(raw, getattr(func, "__globals__", {})), include_extras=True
        )
    except Exception as exc:
        raise ConfigErrors(
            [ConfigError(f"cannot read the type hints: {type(exc).__name__}: {exc}", where)]
        ) from None
    out: dict[str, Param] = {}
    for p in params:
        at = f"{where}.parameters.{p.name}"
        fields = _from_hint(hints.get(p.name, str), at)
        if p.default is not inspect.Parameter.empty:
            fields.setdefault("required", False)
            if p.default is not None:
                fields.setdefault("default", p.default)
        try:
            out[p.name] = Param.model_validate(fields)
        except ValidationError as exc:
            raise ConfigErrors(translate(exc, Param, tuple(at.split(".")))) from None
    return out


def _from_hint(hint: Any, at: str) -> dict[str, Any]:
    """Param fields for one type hint; extra Param(...) in Annotated win over inferred ones."""
    extras: dict[str, Any] = {}
    if get_origin(hint) is Annotated:
        hint, *meta = get_args(hint)
        for item in meta:
            if isinstance(item, Param):
                extras.update(item.model_dump(include=item.model_fields_set))
    fields = _shape(hint, at)
    fields.update(extras)
    return fields


def _shape(hint: Any, at: str) -> dict[str, Any]:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(hint) if a is not type(None)]
        if len(members) == 1 and len(members) < len(get_args(hint)):
            return {**_from_hint(members[0], at), "required": False}
        raise ConfigErrors([ConfigError(f"unsupported type {hint!r}; use one type", at)])
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    if origin is Literal:
        return _enum(list(get_args(hint)), at)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum([member.value for member in hint], at)
    if hint in _ARRAYS or origin in _ARRAYS:
        args = [a for a in get_args(hint) if a is not Ellipsis]
        fields: dict[str, Any] = {"type": "array"}
        if args:
            fields["items"] = _from_hint(args[0], f"{at}.items")
        return fields
    if hint in _OBJECTS or origin in _OBJECTS:
        return {"type": "object"}
    raise ConfigErrors(
        [
            ConfigError(
                f"unsupported type {hint!r}; use str, int, float, bool, list[...], "
                "Literal[...] or an Enum",
                at,
            )
        ]
    )


def _enum(values: list[Any], at: str) -> dict[str, Any]:
    kinds = {_SCALARS.get(type(v)) for v in values}
    if len(kinds) != 1 or None in kinds:
        raise ConfigErrors([ConfigError("enum values must all be text, or all numbers", at)])
    return {"type": kinds.pop(), "enum": tuple(values)}
