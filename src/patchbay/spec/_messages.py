"""Pydantic validation errors turned into ConfigErrors: dotted locations, plain words."""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from patchbay._errors import ConfigError

Loc = tuple[int | str, ...]

# Keys whose values may be (or, after ${VAR} interpolation, contain) credentials: never echoed.
_SENSITIVE = frozenset({"secret", "key", "cert", "ca", "password", "token", "bearer"})


def join_loc(parts: Sequence[int | str]) -> str:
    """`("tools", "x", "rules", 0, "check")` -> `tools.x.rules[0].check`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def issues(exc: ValidationError, root: type[BaseModel]) -> list[tuple[list[int | str], str]]:
    """Every error of `exc` (raised validating `root`) as (path into the data, plain words)."""
    found = []
    for err in exc.errors(include_url=False):
        path, fields = _clean_loc(root, err["loc"])
        message, path = _describe(err, path, fields)
        found.append((path, message))
    return found


def translate(exc: ValidationError, root: type[BaseModel], prefix: Loc = ()) -> list[ConfigError]:
    """Every error of `exc` (raised validating `root`) as a ConfigError located from `prefix`."""
    return [ConfigError(msg, join_loc((*prefix, *path))) for path, msg in issues(exc, root)]


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional so what is left is the type that names the next loc part."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _member(members: tuple[Any, ...], part: int | str) -> Any:
    """The union member pydantic named `part` in a loc: by discriminator tag or class name."""
    for member in (_unwrap(m) for m in members):
        if not _is_model(member):
            if part == getattr(member, "__name__", None):  # a tagged scalar member, e.g. str
                return member
            continue
        if part == member.__name__:
            return member
        tag = member.model_fields.get("type")
        literal = tag is not None and get_origin(tag.annotation) is Literal
        if literal and tag is not None and part in get_args(tag.annotation):
            return member
    return None


def _clean_loc(root: type[BaseModel], loc: Loc) -> tuple[list[int | str], list[str] | None]:
    """Drop pydantic's union and discriminator noise from `loc` by walking the model's types.

    Also returns the field names of the model the last part belongs to (for "did you mean").
    """
    out: list[int | str] = []
    fields: list[str] | None = None
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        origin = get_origin(tp)
        if _is_model(tp):
            fields = list(tp.model_fields)
            out.append(part)
            field = tp.model_fields.get(part) if isinstance(part, str) else None
            tp = field.annotation if field is not None else Any
            continue
        fields = None
        if origin in (Union, types.UnionType):
            member = _member(get_args(tp), part)
            if member is not None:
                tp = member
                continue
            out.append(part)
            tp = Any
        elif part == "[key]":
            tp = Any
        elif origin in (dict, Mapping):
            out.append(part)
            args = get_args(tp)
            tp = args[1] if len(args) == 2 else Any
        elif origin in (list, tuple, Sequence):
            out.append(part)
            args = get_args(tp)
            tp = args[0] if args else Any
        else:
            out.append(part)
            tp = Any
    return out, fields


def _show(value: Any, path: Sequence[int | str]) -> str:
    named = [p for p in path if isinstance(p, str)]
    if named and named[-1] in _SENSITIVE:
        return "a value (hidden)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _expected(ctx: Mapping[str, Any]) -> str:
    return str(ctx.get("expected", "")).replace("'", "")


_TYPE_WORDS = {
    "float_parsing": "a number",
    "float_type": "a number",
    "finite_number": "a finite number",
    "int_parsing": "a whole number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "text",
    "dict_type": "a mapping of keys to values",
    "model_type": "a mapping of keys to values",
    "model_attributes_type": "a mapping of keys to values",
    "list_type": "a list",
    "tuple_type": "a list",
}

_BOUNDS = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}


def _describe(
    err: ErrorDetails, path: list[int | str], fields: list[str] | None
) -> tuple[str, list[int | str]]:
    """Plain words for one error, and the location it belongs at."""
    kind = err["type"]
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    if kind == "extra_forbidden":
        key = path[-1] if path else "?"
        message = f"unknown key {key!r}"
        close = difflib.get_close_matches(str(key), fields or [], n=1)
        return (message + (f" (did you mean {close[0]!r}?)" if close else ""), path)
    if kind == "missing":
        return f"missing required key {path[-1]!r}" if path else "missing", path
    if kind == "union_tag_invalid":
        tags = str(ctx.get("expected_tags", "")).replace("'", "")
        return f"unknown type {ctx.get('tag')!r}; expected one of {tags}", [*path, "type"]
    if kind == "union_tag_not_found":
        return "missing required key 'type'", [*path, "type"]
    if kind == "literal_error":
        return f"expected {_expected(ctx)}, got {_show(err['input'], path)}", path
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, got {_show(err['input'], path)}", path
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        bound = ctx.get(key)
        shown = f"{bound:g}" if isinstance(bound, float) else str(bound)
        return f"must be {words} {shown}, got {_show(err['input'], path)}", path
    if kind in ("value_error", "assertion_error"):
        msg = err["msg"]
        for lead in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(lead)
        return msg, path
    return err["msg"][:1].lower() + err["msg"][1:], path
