"""Turning an upstream answer into what an LLM can speak from, per a tool's ResponseSpec.

Steps, in order: root -> fields -> strip -> summarize -> size cap. Every JMESPath expression
of a spec is compiled once (the compiled spec is cached per ResponseSpec object), and plain
dotted paths such as `data.customer` skip JMESPath altogether: they are most paths, and a
chain of dict lookups gives the same answer several times faster.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.visitor import TreeInterpreter

from patchbay._errors import ConfigError
from patchbay.spec._model import ResponseSpec
from patchbay.transform._summarize import cap, summarize_list, to_jsonable

Getter = Callable[[Any], Any]

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
# An upstream error code is a short token; anything else (a sentence, a stack trace) could
# carry raw upstream text, so it is not passed on even as a code.
_CODE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_JSON_TYPES = (dict, list, str, int, float, bool, type(None))
# ParsedResult.search builds a new interpreter per call, a good part of a small expression's
# cost; the interpreter keeps no state between visits, so one is shared.
_INTERPRETER = TreeInterpreter()


def compile_path(expr: str, location: str = "") -> Getter:
    """A function reading `expr` (JMESPath) from a value; unreadable or missing gives None."""
    if _DOTTED.fullmatch(expr):
        keys = tuple(expr.split("."))

        def dotted(value: Any) -> Any:
            for key in keys:
                if not isinstance(value, dict):
                    return None
                value = value.get(key)
            return value

        return dotted
    try:
        ast = jmespath.compile(expr).parsed
    except JMESPathError as exc:
        raise ConfigError(f"{expr!r} is not valid JMESPath: {exc}", location) from None

    def search(value: Any) -> Any:
        try:
            return _INTERPRETER.visit(ast, value)
        except (JMESPathError, TypeError, ValueError, ArithmeticError):
            return None  # e.g. a function given the wrong type by an unexpected answer

    return search


def _strip(
    value: Any,
    names: frozenset[str],
    paths: Mapping[str, tuple[tuple[str, ...], ...]],
    trail: tuple[str, ...],
) -> Any:
    """A copy of `value` without the stripped keys, at any depth.

    A name removes that key from every object; a dotted path `a.b` removes `b` from every
    object reached through key `a` (lists in between are looked through), wherever it sits.
    """
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in names:
                continue
            prefixes = paths.get(key)
            if prefixes and any(trail[len(trail) - len(p) :] == p for p in prefixes):
                continue
            out[key] = _strip(item, names, paths, (*trail, key) if paths else trail)
        return out
    if isinstance(value, list):
        return [_strip(item, names, paths, trail) for item in value]
    return value


class CompiledResponse:
    """A ResponseSpec with its expressions compiled; `apply` runs the transformation."""

    __slots__ = (
        "code",
        "fields",
        "max_chars",
        "root",
        "spec",
        "strip_names",
        "strip_paths",
        "summary",
        "summary_at",
        "totals",
    )

    def __init__(self, spec: ResponseSpec) -> None:
        self.spec = spec
        self.root = compile_path(spec.root, "response.root") if spec.root else None
        self.fields = (
            None
            if spec.fields is None
            else tuple(
                (out, compile_path(expr, f"response.fields.{out}"))
                for out, expr in spec.fields.items()
            )
        )
        self.code = compile_path(spec.code_field, "response.code_field")
        self.strip_names = frozenset(s for s in spec.strip if "." not in s)
        paths: dict[str, list[tuple[str, ...]]] = {}
        for dotted in (s for s in spec.strip if "." in s):
            *prefix, last = dotted.split(".")
            paths.setdefault(last, []).append(tuple(prefix))
        self.strip_paths = {k: tuple(v) for k, v in paths.items()}
        self.summary = spec.summarize
        self.summary_at: tuple[str, ...] | Getter | None = None
        self.totals: dict[str, Getter] = {}
        if self.summary is not None:
            path = self.summary.path
            if path and _DOTTED.fullmatch(path):
                self.summary_at = tuple(path.split("."))  # replaced in place
            elif path:
                self.summary_at = compile_path(path, "response.summarize.path")
            self.totals = {
                name: compile_path(field, f"response.summarize.totals.{name}")
                for name, field in self.summary.totals.items()
            }
        self.max_chars = spec.max_chars

    def apply(self, body: Any) -> Any:
        """The transformed body: rooted, renamed, stripped, summarised and capped."""
        value = body if isinstance(body, _JSON_TYPES) else to_jsonable(body)
        if self.root is not None:
            value = self.root(value)
        if self.fields is not None and value is not None:
            picked = {}
            for out, get in self.fields:
                found = get(value)
                if found is not None:  # missing is omitted, never spoken as "null"
                    picked[out] = found
            value = picked
        if self.strip_names or self.strip_paths:
            value = _strip(value, self.strip_names, self.strip_paths, ())
        if self.summary is not None:
            value = self._summarize(value)
        return cap(value, self.max_chars)

    def _summarize(self, value: Any) -> Any:
        spec = self.summary
        assert spec is not None
        at = self.summary_at

        def summary(items: list[Any]) -> dict[str, Any]:
            return summarize_list(
                items,
                top=spec.top,
                items_as=spec.items_as,
                count_as=spec.count_as,
                totals=self.totals,
            )

        if at is None:
            return summary(value) if isinstance(value, list) else value
        if callable(at):
            found = at(value)
            return summary(found) if isinstance(found, list) else value
        return _replace_at(value, at, summary)

    def error_code(self, body: Any) -> str | None:
        """The upstream's error code in an error body, if it has a plausible one."""
        if body is None:
            return None
        found = self.code(body)
        if isinstance(found, bool) or not isinstance(found, str | int):
            return None
        code = str(found)
        return code if _CODE.fullmatch(code) else None


def _replace_at(value: Any, keys: tuple[str, ...], make: Callable[[list[Any]], Any]) -> Any:
    """`value` with the list at dotted `keys` replaced by make(list); copies only the path."""
    if not keys:
        return make(value) if isinstance(value, list) else value
    if not isinstance(value, dict) or keys[0] not in value:
        return value
    out = dict(value)
    out[keys[0]] = _replace_at(value[keys[0]], keys[1:], make)
    return out


_CACHE: dict[int, CompiledResponse] = {}
_CACHE_LIMIT = 4096


def compiled_response(spec: ResponseSpec) -> CompiledResponse:
    """The compiled form of `spec`, built on first use and kept for the spec object."""
    found = _CACHE.get(id(spec))
    # The entry holds the spec, so its id cannot be reused while the entry exists.
    if found is None or found.spec is not spec:
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.clear()
        found = _CACHE[id(spec)] = CompiledResponse(spec)
    return found


def transform_response(spec: ResponseSpec, body: Any) -> Any:
    """An upstream body transformed for the LLM: root, fields, strip, summarize, size cap."""
    return compiled_response(spec).apply(body)


def error_words(spec: ResponseSpec, body: Any, default: str) -> tuple[str | None, str]:
    """The upstream error code in an error body and the configured words for it, else `default`.

    Never returns upstream text: an unknown code gets the default words.
    """
    code = compiled_response(spec).error_code(body)
    words = spec.messages.get(code) if code is not None else None
    return code, words if words else default


def flatten(value: Any, sep: str = "_") -> Any:
    """Nested objects flattened into one level: {"a": {"b": 1}} -> {"a_b": 1}; lists kept."""
    if isinstance(value, list):
        return [flatten(item, sep) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, item in node.items():
            name = f"{prefix}{sep}{key}" if prefix else str(key)
            if isinstance(item, dict) and item:
                walk(item, name)
            else:
                out[name] = flatten(item, sep) if isinstance(item, list) else item

    walk(value, "")
    return out
