"""OpenAPI schemas as patchbay parameters: `$ref`s followed, `allOf` merged, nested objects
kept as free-form `object` parameters, anything else refused with a reason."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from patchbay.importers._source import RefError, Refs, listed, mapping
from patchbay.spec._pattern import compile_pattern

_TYPES = ("string", "integer", "number", "boolean", "array", "object")
_FORMATS = {"email": "email", "date": "date", "date-time": "date-time", "uri": "uri", "url": "uri"}
_DESCRIPTION_CHARS = 200
_MAX_DEPTH = 8


class Unexpressible(Exception):
    """A schema a patchbay parameter cannot say; the message is the reason."""


def short(text: Any, limit: int) -> str:
    """`text` on one line, cut at a sentence or word end within `limit` characters."""
    flat = " ".join(str(text or "").split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
    if end >= limit // 3:
        return cut[: end + 1]
    return cut[: cut.rfind(" ")].rstrip(",;:") + "…" if " " in cut else cut


def merged(refs: Refs, schema: Any, depth: int = 0) -> dict[str, Any]:
    """`schema` with `$ref`s followed and `allOf` folded into one schema."""
    if depth > _MAX_DEPTH:
        raise Unexpressible("the schema nests or refers to itself too deeply")
    try:
        node = refs.deref(schema)
    except RefError as exc:
        raise Unexpressible(str(exc)) from None
    if not isinstance(node, Mapping):
        raise Unexpressible("the schema is not an object")
    out: dict[str, Any] = {}
    own = {k: v for k, v in node.items() if k != "allOf"}
    # Each part in order, the schema's own keys last: fields keep the order a reader expects.
    for piece in [*(merged(refs, p, depth + 1) for p in listed(node.get("allOf"))), own]:
        props = {**mapping(out.get("properties")), **mapping(piece.get("properties"))}
        required = [*_names(out.get("required")), *_names(piece.get("required"))]
        out = {**out, **piece}
        if props:
            out["properties"] = props
        if required:
            out["required"] = list(dict.fromkeys(required))
    if "properties" in out and "type" not in out:
        out["type"] = "object"
    return out


def _names(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _one_type(refs: Refs, schema: dict[str, Any], depth: int) -> dict[str, Any]:
    """Nullable forms (3.1 type lists, anyOf with null, 3.0 nullable) as their one real type."""
    kind = schema.get("type")
    if isinstance(kind, list):
        real = [t for t in kind if t != "null"]
        if len(real) != 1:
            raise Unexpressible(f"a value of several types ({', '.join(map(str, real))})")
        schema = {**schema, "type": real[0]}
    for key in ("anyOf", "oneOf"):
        choices = listed(schema.get(key))
        if not choices:
            continue
        options = [merged(refs, c, depth + 1) for c in choices]
        real = [o for o in options if o.get("type") != "null"]
        kinds = {str(o.get("type")) for o in real}
        if len(real) == 1:
            rest = {k: v for k, v in schema.items() if k != key}
            schema = {**real[0], **rest}
        elif kinds == {"object"}:
            schema = {k: v for k, v in schema.items() if k != key} | {"type": "object"}
        else:
            raise Unexpressible(f"{key} of {len(real)} different shapes")
    return schema


def to_param(
    refs: Refs, schema: Any, *, description: str | None = None, depth: int = 0
) -> dict[str, Any]:
    """The patchbay parameter (as config data) for an OpenAPI schema; raises Unexpressible."""
    node = _one_type(refs, merged(refs, schema, depth), depth)
    kind = node.get("type")
    if kind is None and "items" in node:
        kind = "array"
    if kind not in _TYPES:
        raise Unexpressible("the schema gives no type" if kind is None else f"type {kind!r}")
    param: dict[str, Any] = {"type": kind}
    words = description or node.get("description") or node.get("title")
    if kind == "object" and isinstance(node.get("properties"), Mapping) and node["properties"]:
        keys = ", ".join(list(node["properties"])[:12])
        words = f"{short(words, 120)} Fields: {keys}." if words else f"Fields: {keys}."
    if words:
        param["description"] = short(words, _DESCRIPTION_CHARS)
    fmt = _FORMATS.get(str(node.get("format"))) if kind == "string" else None
    if fmt:
        param["format"] = fmt
    if isinstance(node.get("enum"), list) and node["enum"]:
        param["enum"] = [v for v in node["enum"] if v is not None]
    pattern = node.get("pattern")
    if kind == "string" and isinstance(pattern, str) and _compiles(pattern):
        param["pattern"] = pattern
    for src, dst in (("minimum", "minimum"), ("maximum", "maximum")):
        if isinstance(node.get(src), int | float) and not isinstance(node.get(src), bool):
            param[dst] = node[src]
    for src, dst in (
        ("minLength", "min_length"),
        ("maxLength", "max_length"),
        ("minItems", "min_items"),
        ("maxItems", "max_items"),
    ):
        value = node.get(src)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            param[dst] = value
    if kind == "array" and node.get("items") not in (None, {}, True):
        try:
            item = to_param(refs, node["items"], depth=depth + 1)
        except Unexpressible:
            pass  # a list of free-form items: the list itself is still expressible
        else:
            item.pop("description", None)
            param["items"] = item
    default = node.get("default")
    if default is not None and not isinstance(default, Mapping | list):
        param["default"] = default
    return param


def _compiles(pattern: str) -> bool:
    try:
        compile_pattern(pattern)
    except re.error:
        return False
    return True


# Envelope keys APIs wrap their answer in; `status`, `meta`, `links` and the like sit beside.
_WRAPPERS = ("data", "result", "results", "payload", "response", "body")


def root_suggestion(refs: Refs, responses: Any) -> str | None:
    """The path (JMESPath) to the useful part of a 2xx JSON answer, when it is wrapped."""
    schema = None
    for status, answer in mapping(responses).items():
        if str(status).startswith("2"):
            try:
                resolved = mapping(refs.deref(answer))
            except RefError:
                return None
            content = mapping(resolved.get("content"))
            media = next((m for k, m in content.items() if "json" in str(k).lower()), None)
            schema = mapping(media).get("schema") if media is not None else None
            schema = schema if schema is not None else resolved.get("schema")  # Swagger 2.0
            break
    path: list[str] = []
    for depth in range(3):
        try:
            node = merged(refs, schema, depth)
        except Unexpressible:
            break
        props = mapping(node.get("properties"))
        objects = [k for k, v in props.items() if _is_object(refs, v)]
        inner = next((k for k in _WRAPPERS if k in props), None)
        if inner is None and path and len(objects) == 1 and len(props) == 1:
            inner = objects[0]  # {"data": {"customer": {...}}}: the one thing inside
        if inner is None or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", inner):
            break
        path.append(inner)
        schema = props[inner]
    return ".".join(path) or None


def _is_object(refs: Refs, schema: Any) -> bool:
    try:
        return merged(refs, schema).get("type") == "object"
    except Unexpressible:
        return False
