"""The JSON Schema of what the LLM receives from a tool (`returns`), given or derived.

Derived from `response.expect` through the response transform, where each step can be
followed: a dotted `root`, `fields` with dotted paths, `strip`, a list `summarize`. A step
written in full JMESPath (filters, functions) gives `{}` (anything) from there on. The size
cap (`max_chars`) may still shorten an answer: the schema describes the answer before it.
Hand-written: no library maps a schema through JMESPath; dotted paths are most configs.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from patchbay.spec._model import ListSummary, ResponseSpec, Tool

__all__ = ["returns_schema"]

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
Schema = dict[str, Any]


def returns_schema(tool: Tool) -> Schema | None:
    """The tool's `returns`, else one derived from `response.expect`; None when unknown."""
    if tool.returns is not None:
        return tool.returns
    if tool.builtin is not None:
        return None
    spec = tool.response
    expect = spec.expect
    if expect is None:
        return None  # `fields` alone say only names, which the docs' outputs table shows
    derived = _derive(spec, expect)
    if not derived:
        return None
    if expect is not None and "$ref" in json.dumps(derived):
        for key in ("$defs", "definitions"):  # local references still point into these
            if key in expect:
                derived[key] = expect[key]
    return derived


def _derive(spec: ResponseSpec, expect: Schema | None) -> Schema:
    root_doc = expect or {}
    current: Schema = copy.deepcopy(expect) if expect is not None else {}
    if spec.root:
        current, _ = _at(current, spec.root, root_doc)
    if spec.fields is not None:
        props: dict[str, Any] = {}
        required = []
        for out, expr in spec.fields.items():
            sub, needed = _at(current, expr, root_doc)
            kind = sub.get("type")
            if isinstance(kind, list) and "null" in kind and len(kind) > 1:
                sub["type"] = [k for k in kind if k != "null"]  # a null field is left out
            props[out] = sub
            if needed and not _nullable(sub):
                required.append(out)
        current = {"type": "object", "properties": props}
        if required:
            current["required"] = required
    if spec.strip:
        names = frozenset(s for s in spec.strip if "." not in s)
        paths = [tuple(s.split(".")) for s in spec.strip if "." in s]
        current = _strip(current, names, paths, ())
    if spec.summarize is not None:
        current = _summarize(current, spec.summarize, root_doc)
    return current


def _resolve(node: Any, root_doc: Schema) -> Any:
    """A local `$ref` (`#/$defs/x`) followed, a few levels at most (cycles stop there)."""
    for _ in range(8):
        if not isinstance(node, dict) or not isinstance(node.get("$ref"), str):
            return node
        ref = node["$ref"]
        if not ref.startswith("#/"):
            return {}
        target: Any = root_doc
        for part in ref[2:].split("/"):
            if not isinstance(target, dict) or part not in target:
                return {}
            target = target[part]
        node = target
    return {}


def _at(node: Schema, path: str, root_doc: Schema) -> tuple[Schema, bool]:
    """The schema at a dotted path and whether every step is required; ({}, False) unknown."""
    if not _DOTTED.fullmatch(path):
        return {}, False
    needed = True
    for key in path.split("."):
        node = _resolve(node, root_doc)
        if not isinstance(node, dict):
            return {}, False
        props = node.get("properties")
        if isinstance(props, dict) and key in props:
            required = node.get("required")
            needed = needed and isinstance(required, list) and key in required
            node = props[key]
        elif isinstance(node.get("additionalProperties"), dict):
            node, needed = node["additionalProperties"], False
        else:
            return {}, False
    found = _resolve(node, root_doc)
    return (copy.deepcopy(found) if isinstance(found, dict) else {}), needed


def _nullable(node: Schema) -> bool:
    kind = node.get("type")
    return not node or kind == "null" or (isinstance(kind, list) and "null" in kind)


def _strip(
    node: Any, names: frozenset[str], paths: list[tuple[str, ...]], trail: tuple[str, ...]
) -> Any:
    """The schema without the stripped properties, as the transform strips the answer."""
    if not isinstance(node, dict):
        return node
    out = dict(node)
    props = node.get("properties")
    if isinstance(props, dict):
        kept = {}
        for key, sub in props.items():
            gone = key in names or any(
                p[-1] == key and trail[len(trail) - len(p) + 1 :] == p[:-1] for p in paths
            )
            if not gone:
                kept[key] = _strip(sub, names, paths, (*trail, key))
        out["properties"] = kept
        if isinstance(node.get("required"), list):
            out["required"] = [k for k in node["required"] if k in kept]
    if isinstance(node.get("items"), dict):
        out["items"] = _strip(node["items"], names, paths, trail)
    return out


def _summary_of(node: Schema, spec: ListSummary, root_doc: Schema) -> Schema:
    node = _resolve(node, root_doc)
    items = node.get("items") if isinstance(node, dict) else None
    props: dict[str, Any] = {
        spec.items_as: {
            "type": "array",
            "items": items if isinstance(items, dict) else {},
            "maxItems": spec.top,
        },
        spec.count_as: {"type": "integer", "minimum": 0},
    }
    for name in spec.totals:
        props[name] = {"type": "number"}
    props["more"] = {"type": "integer", "minimum": 0}
    return {"type": "object", "properties": props, "required": list(props)}


def _summarize(node: Schema, spec: ListSummary, root_doc: Schema) -> Schema:
    if spec.path is None:
        if _resolve(node, root_doc).get("type") == "array":
            return _summary_of(node, spec, root_doc)
        return node
    if not _DOTTED.fullmatch(spec.path):
        return {}
    keys = spec.path.split(".")
    out = copy.deepcopy(node)
    target = out
    for key in keys[:-1]:
        props = target.get("properties") if isinstance(target, dict) else None
        if not isinstance(props, dict) or not isinstance(props.get(key), dict):
            return out
        target = props[key]
    props = target.get("properties") if isinstance(target, dict) else None
    last = keys[-1]
    found = props.get(last) if isinstance(props, dict) else None
    is_list = isinstance(found, dict) and _resolve(found, root_doc).get("type") == "array"
    if isinstance(props, dict) and isinstance(found, dict) and is_list:
        props[last] = _summary_of(found, spec, root_doc)
    return out
