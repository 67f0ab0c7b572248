"""Checking an LLM's arguments against a tool's parameters before any request is made.

Each tool's parameters are compiled once into small checkers (a ToolValidator, cached per
Tool object), so a call pays for dictionary lookups and the checks themselves, not for
building a schema or a pydantic model. Hand-written rather than jsonschema/pydantic because
the errors must be words an LLM can act on, one per field, and formats must normalise values.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias

from patchbay._errors import ConfigError, InvalidArguments
from patchbay.spec._call import CallContext
from patchbay.spec._model import Param, Tool
from patchbay.spec._pattern import compile_pattern
from patchbay.validate._formats import BadValue, format_checker
from patchbay.validate._nested import BadFields, ObjectCheck
from patchbay.validate._rules import RULES_FIELD, CompiledRule, check_rules, compile_rule

HookResult: TypeAlias = Mapping[str, str] | None
Validator: TypeAlias = Callable[[dict[str, Any], CallContext], HookResult | Awaitable[HookResult]]
"""A Python validator hook: gets the cleaned arguments (it may normalise them in place) and
the call, returns field -> words for what is wrong (or None), or raises InvalidArguments."""

_UNIT_MAX = 40  # a description this short usually names the unit ("amount in cents")
_MAX_ITEM_ERRORS = 3
_SAFE_INTEGER = 2**53 - 1  # the largest integer every JSON reader keeps exactly
_MAX_FIELDS = 10  # fields named in one invalid_arguments answer; the rest are counted
_MAX_NAME = 40  # characters of a field name the LLM sees (it chose the name)
_MAX_WORDS = 300  # characters of one field's words (hooks and rules may say a lot)
_LEAD = "The arguments need fixing before this can be done. "
# An object, or a list without `items`, is free-form JSON: bounded so that everything after
# validation (request bodies, fingerprints, logs) can encode and walk it without failing.
_MAX_DEPTH = 32  # levels of nesting, the parameter itself included
_MAX_VALUES = 10_000  # values in one free-form parameter, containers included
_MAX_TEXT = 1_000_000  # characters of its keys and text together
_BROKEN = "must be text without broken characters (it holds a lone surrogate)"
_BROKEN_INSIDE = "must hold only text without broken characters (it holds a lone surrogate)"
_JSON_TYPES: tuple[type[Any], ...] = (str, int, float, dict, list, tuple)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _broken(text: str) -> bool:
    """Whether `text` holds a lone surrogate, which no UTF-8 encoder (HTTP, JSON) accepts."""
    if text.isascii():
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _json_problem(value: Any) -> str | None:
    """Why a free-form value cannot go out as JSON to any reader, or None when it can.

    Walked with a stack, not recursion: the value may be nested thousands of levels deep.
    Exact type tests first: they keep the walk cheaper than encoding the value once.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    count = 1
    text = 0
    while stack:
        node, depth = pop()
        kind = type(node)
        if kind is str:
            text += len(node)
            if not node.isascii() and _broken(node):
                return _BROKEN_INSIDE
        elif kind is int:
            if not -_SAFE_INTEGER <= node <= _SAFE_INTEGER:
                return "holds a number far too large"
        elif kind is dict or kind is list or kind is tuple:
            if depth > _MAX_DEPTH:
                return f"is nested too deeply (at most {_MAX_DEPTH} levels)"
            count += len(node)
            if count > _MAX_VALUES:
                return f"is too large (at most {_MAX_VALUES} values)"
            depth += 1
            if kind is dict:
                for key, item in node.items():
                    if not isinstance(key, str):
                        return "must hold only objects with named fields"
                    text += len(key)
                    if not key.isascii() and _broken(key):
                        return _BROKEN_INSIDE
                    push((item, depth))
            else:
                for item in node:
                    push((item, depth))
        elif kind is float:
            if not math.isfinite(node):
                return "must hold only finite numbers"
        elif node is None or kind is bool:
            continue
        else:  # a subclass (an enum member, an OrderedDict) is checked as its JSON value
            base = next((b for b in _JSON_TYPES if isinstance(node, b)), None)
            if base is None:
                return f"must hold only JSON values, not {_kind(node)}"
            push((base(node), depth))
            continue
        if text > _MAX_TEXT:
            return f"is too large (at most {_MAX_TEXT} characters of text)"
    return None


def _enum_match(value: Any, options: tuple[Any, ...]) -> bool:
    # True == 1 in Python; in a JSON enum they are different values.
    is_bool = isinstance(value, bool)
    return any(o == value and isinstance(o, bool) == is_bool for o in options)


class _ParamCheck:
    """One parameter's checks, compiled once; `clean` returns the normalised value."""

    __slots__ = (
        "enum",
        "fields",
        "fmt",
        "items",
        "limit",
        "max_items",
        "max_len",
        "maximum",
        "min_items",
        "min_len",
        "minimum",
        "pattern",
        "pattern_words",
        "region",
        "type",
        "unit",
    )

    def __init__(self, param: Param, location: str) -> None:
        self.type = param.type
        self.enum = param.enum
        self.fmt = format_checker(param.format) if param.format else None
        self.region = param.region
        self.minimum = param.minimum
        self.maximum = param.maximum
        self.min_len = param.min_length
        self.max_len = param.max_length
        self.min_items = param.min_items
        self.max_items = param.max_items
        bounds = (abs(b) for b in (param.minimum, param.maximum) if b is not None)
        self.limit = max((_SAFE_INTEGER, *bounds))
        desc = (param.description or "").strip()
        self.unit = f" ({desc})" if desc and len(desc) <= _UNIT_MAX else ""
        self.pattern: re.Pattern[str] | None = None
        self.pattern_words = ""
        if param.pattern is not None:
            try:
                self.pattern = compile_pattern(param.pattern)
            except re.error as exc:
                raise ConfigError(f"pattern is not a valid regex: {exc}", location) from None
            hint = f", {desc}" if self.unit else ""
            self.pattern_words = f"does not have the expected form (pattern {param.pattern}{hint})"
        self.items = _ParamCheck(param.items, f"{location}.items") if param.items else None
        self.fields = (
            ObjectCheck(param, location, _ParamCheck) if param.properties is not None else None
        )

    def clean(self, value: Any, region: str) -> Any:
        """The normalised value, or BadValue with words for the LLM."""
        kind = self.type
        if kind == "string":
            value = self._string(value, region)
        elif kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BadValue(f"must be a whole number, not {_kind(value)}")
            if isinstance(value, float):
                # LLMs often write 24700.0 for an integer; a fraction is a real mistake.
                if not value.is_integer():
                    raise BadValue(f"must be a whole number{self.unit}, not {_num(value)}")
                value = int(value)
            self._size(value)
            self._range(value)
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BadValue(f"must be a number, not {_kind(value)}")
            if isinstance(value, float) and not math.isfinite(value):
                raise BadValue("must be a finite number")
            if isinstance(value, int):
                self._size(value)
            self._range(value)
        elif kind == "boolean":
            if not isinstance(value, bool):
                raise BadValue(f"must be true or false, not {_kind(value)}")
        elif kind == "array":
            value = self._array(value, region)
        elif not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise BadValue(f"must be an object with named fields, not {_kind(value)}")
        else:
            value = dict(value) if self.fields is None else self.fields.clean(value, region)
            problem = _json_problem(value)
            if problem is not None:
                raise BadValue(problem)
        if self.enum is not None and not _enum_match(value, self.enum):
            options = (o if isinstance(o, str) else json.dumps(o) for o in self.enum)
            raise BadValue("must be one of: " + ", ".join(options))
        return value

    def _string(self, value: Any, region: str) -> str:
        if not isinstance(value, str):
            raise BadValue(f"must be text, not {_kind(value)}")
        if not value.isascii() and _broken(value):
            raise BadValue(_BROKEN)
        text: str = value
        if self.fmt is not None:
            text = self.fmt(text.strip(), self.region or region)
        if self.min_len is not None and len(text) < self.min_len:
            raise BadValue(f"must be at least {_plural(self.min_len, 'character')} long")
        if self.max_len is not None and len(text) > self.max_len:
            raise BadValue(f"must be at most {_plural(self.max_len, 'character')} long")
        if self.pattern is not None and self.pattern.search(text) is None:
            raise BadValue(self.pattern_words)
        return text

    def _size(self, value: int) -> None:
        # Beyond 2**53 a JSON number loses digits in many upstreams (JavaScript, doubles), and
        # a 5,000-digit integer cannot even be written as text by Python; a config that wants
        # bigger integers says so with minimum/maximum.
        if abs(value) > self.limit:
            raise BadValue(f"is far too large a number{self.unit}")

    def _range(self, value: float) -> None:
        if self.minimum is not None and value < self.minimum:
            raise BadValue(f"must be at least {_num(self.minimum)}{self.unit}")
        if self.maximum is not None and value > self.maximum:
            raise BadValue(f"must be at most {_num(self.maximum)}{self.unit}")

    def _array(self, value: Any, region: str) -> list[Any]:
        if not isinstance(value, list | tuple):
            raise BadValue(f"must be a list, not {_kind(value)}")
        if self.min_items is not None and len(value) < self.min_items:
            raise BadValue(f"must have at least {_plural(self.min_items, 'item')}")
        if self.max_items is not None and len(value) > self.max_items:
            raise BadValue(f"must have at most {_plural(self.max_items, 'item')}")
        if self.items is None:
            problem = _json_problem(value)
            if problem is not None:
                raise BadValue(problem)
            return list(value)
        cleaned: list[Any] = []
        problems: list[str] = []
        paths: dict[str, str] = {}  # a list of objects: problems by field path
        for i, item in enumerate(value):
            try:
                cleaned.append(self.items.clean(item, region))
            except BadFields as exc:
                paths.update((f"[{i}]{path}", words) for path, words in exc.fields.items())
            except BadValue as exc:
                problems.append(f"item {i} {exc.words}")
                paths[f"[{i}]"] = exc.words
        if paths and len(paths) > len(problems):
            raise BadFields(dict(list(paths.items())[:_MAX_FIELDS]))
        if problems:
            raise BadValue("; ".join(problems[:_MAX_ITEM_ERRORS]))
        return cleaned


def _root(field: str) -> str:
    """The argument a field path (`address.city`, `lines[0].sku`) starts from."""
    return re.split(r"[.\[]", field, maxsplit=1)[0]


def _cut(text: str, limit: int) -> str:
    """`text` within `limit` characters, and without lone surrogates: the answer must encode."""
    if len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return text.encode(errors="replace").decode() if _broken(text) else text


def _message(shown: Mapping[str, str], hidden: int) -> str:
    """The words for the LLM: each shown field with its problem, identical words said once."""
    by_words: dict[str, list[str]] = {}
    for name, words in shown.items():
        by_words.setdefault(words, []).append(name)
    parts = [
        words if names == [RULES_FIELD] else f"{', '.join(names)}: {words}"
        for words, names in by_words.items()
    ]
    if hidden and not parts:
        return f"{_LEAD}Problems with {_plural(hidden, 'argument')}."
    if hidden:
        parts.append(f"and {_plural(hidden, 'more argument')} with a problem")
    return _LEAD + "; ".join(parts) + "."


def _llm_size(message: str, fields: Mapping[str, str]) -> int:
    """Characters of the JSON the LLM reads for this failure (ToolResult.for_llm)."""
    shape: dict[str, Any] = {"ok": False, "error": "invalid_arguments", "message": message}
    if fields:
        shape["fields"] = fields
    return len(json.dumps(shape, ensure_ascii=False, separators=(",", ":")))


def _fail(fields: Mapping[str, str], tool: Tool, call: CallContext | None) -> InvalidArguments:
    """One InvalidArguments naming the bad fields, within the tool's `response.max_chars`.

    The LLM (or whoever speaks for it) controls the argument names and how many there are:
    at most _MAX_FIELDS are named, each name and its words cut, the rest only counted, so
    thousands of unknown names cannot flood the model's context.
    """
    shown: dict[str, str] = {}
    for name, words in fields.items():
        if len(shown) == _MAX_FIELDS:
            break
        shown.setdefault(_cut(name, _MAX_NAME), _cut(words, _MAX_WORDS))
    budget = tool.response.max_chars
    while True:
        message = _message(shown, len(fields) - len(shown))
        if not shown or _llm_size(message, shown) <= budget:
            break
        shown.popitem()  # the last named field becomes one of those only counted
    overflow = _llm_size(message, shown) - budget
    if overflow > 0:  # a max_chars too small even for the count: keep what fits
        message = _cut(message, len(message) - overflow)
    return InvalidArguments(
        message,
        tool=tool.name or None,
        call_id=call.id if call is not None else None,
        fields=shown,
    )


class ToolValidator:
    """A tool's argument checks compiled once: parameters, require, rules.

    Building one raises ConfigError for a broken pattern or rule, so config validation can
    build every tool's validator up front.
    """

    __slots__ = ("_all_of", "_checks", "_defaults", "_one_of", "_required", "_rules", "tool")

    def __init__(self, tool: Tool) -> None:
        self.tool = tool
        where = f"tools.{tool.name}" if tool.name else "tool"
        self._checks = {
            name: _ParamCheck(param, f"{where}.parameters.{name}")
            for name, param in tool.parameters.items()
        }
        self._required = frozenset(n for n in tool.parameters if tool.is_required(n))
        self._defaults = {n: p.default for n, p in tool.parameters.items() if p.default is not None}
        require = tool.require
        self._one_of = require.one_of if require else ()
        self._all_of = require.all_of if require else ()
        self._rules: tuple[CompiledRule, ...] = tuple(
            compile_rule(rule, f"{where}.rules[{i}]") for i, rule in enumerate(tool.rules)
        )

    def clean(
        self, args: Any, call: CallContext | None = None, *, default_region: str = "US"
    ) -> dict[str, Any]:
        """Type, range, format and require checks; the normalised arguments or InvalidArguments."""
        if not isinstance(args, Mapping):
            raise _fail({"_arguments": "must be a JSON object of named arguments"}, self.tool, call)
        bad: dict[str, str] = {}
        cleaned: dict[str, Any] = {}
        checks = self._checks
        unknown = ""
        inside: set[str] = set()  # given, with problems inside (said by field path)
        for name, value in args.items():
            check = checks.get(name) if isinstance(name, str) else None
            if check is None:
                if not unknown:  # said the same way for every unknown name, so built once
                    known = ", ".join(checks) or "none"
                    unknown = f"is not an argument of this tool (its arguments are: {known})"
                bad[str(name)] = unknown
            elif value is not None:  # OpenAI strict mode sends null for "not given"
                try:
                    cleaned[name] = check.clean(value, default_region)
                except BadFields as exc:
                    bad.update((f"{name}{path}", words) for path, words in exc.fields.items())
                    inside.add(name)
                except BadValue as exc:
                    bad[name] = exc.words
        for name in self._required:
            if name not in cleaned and name not in bad and name not in inside:
                bad[name] = "is required but was not given"
        if self._one_of and not any(n in cleaned or n in bad or n in inside for n in self._one_of):
            words = f"give at least one of {', '.join(self._one_of)}; none was given"
            for name in self._one_of:
                bad[name] = words
        if self._all_of and any(n in cleaned or n in bad or n in inside for n in self._all_of):
            together = ", ".join(self._all_of)
            for name in self._all_of:
                if name not in cleaned and name not in bad and name not in inside:
                    bad[name] = f"must be given together with the others of {together}"
        if bad:
            order = {n: i for i, n in enumerate(checks)}
            ordered = dict(sorted(bad.items(), key=lambda kv: order.get(_root(kv[0]), len(order))))
            raise _fail(ordered, self.tool, call)
        for name, default in self._defaults.items():
            if name not in cleaned:
                mutable = isinstance(default, list | dict)
                cleaned[name] = copy.deepcopy(default) if mutable else default
        return cleaned

    def check(self, args: Any, call: CallContext, *, default_region: str = "US") -> dict[str, Any]:
        """`clean`, then the tool's business rules over the cleaned arguments and the call."""
        cleaned = self.clean(args, call, default_region=default_region)
        if self._rules:
            failed = check_rules(self._rules, cleaned, call)
            if failed:
                raise _fail(failed, self.tool, call)
        return cleaned


_CACHE: dict[tuple[str, int], ToolValidator] = {}
_CACHE_LIMIT = 4096


def tool_validator(tool: Tool) -> ToolValidator:
    """The compiled validator of `tool`, built on first use and kept for the Tool object."""
    key = (tool.name, id(tool))
    found = _CACHE.get(key)
    # The entry holds the tool, so its id cannot be reused while the entry exists.
    if found is None or found.tool is not tool:
        if len(_CACHE) >= _CACHE_LIMIT:  # configs reloaded many times: start over
            _CACHE.clear()
        found = _CACHE[key] = ToolValidator(tool)
    return found


def _merge(result: object, hook: object, into: dict[str, str]) -> None:
    if result is None:
        return
    if not isinstance(result, Mapping):
        name = getattr(hook, "__qualname__", repr(hook))
        raise TypeError(f"validator hook {name} returned {type(result).__name__}, not a mapping")
    for field, words in result.items():
        into[str(field)] = str(words)


def _hook_failure(exc: InvalidArguments, into: dict[str, str]) -> None:
    into.update(exc.fields or {"_arguments": exc.message})


def validate_arguments(
    tool: Tool,
    args: Mapping[str, Any],
    call: CallContext,
    *,
    default_region: str = "US",
    hooks: Sequence[Validator] = (),
) -> dict[str, Any]:
    """The cleaned arguments of a tool call, or InvalidArguments naming every bad field."""
    cleaned = tool_validator(tool).check(args, call, default_region=default_region)
    failures: dict[str, str] = {}
    for hook in hooks:
        try:
            result = hook(cleaned, call)
        except InvalidArguments as exc:
            _hook_failure(exc, failures)
            continue
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            name = getattr(hook, "__qualname__", repr(hook))
            raise TypeError(f"validator hook {name} is async; use validate_arguments_async")
        _merge(result, hook, failures)
    if failures:
        raise _fail(failures, tool, call)
    return cleaned


async def validate_arguments_async(
    tool: Tool,
    args: Mapping[str, Any],
    call: CallContext,
    *,
    default_region: str = "US",
    hooks: Sequence[Validator] = (),
) -> dict[str, Any]:
    """Like validate_arguments, and hooks may be async; they run in order, after the rules."""
    cleaned = tool_validator(tool).check(args, call, default_region=default_region)
    failures: dict[str, str] = {}
    for hook in hooks:
        try:
            result = hook(cleaned, call)
            if inspect.isawaitable(result):
                result = await result
        except InvalidArguments as exc:
            _hook_failure(exc, failures)
            continue
        _merge(result, hook, failures)
    if failures:
        raise _fail(failures, tool, call)
    return cleaned
