"""OpenAPI schemas as patchbay parameters: `$ref`s followed, `allOf` merged, nested objects
kept with their fields (`properties`, bounded depth) or else free-form, anything else refused
with a reason."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from patchbay.importers._source import RefError, Refs, listed, mapping
from patchbay.spec._nested import FIELD_NAME, MAX_NESTING
from patchbay.spec._pattern import compile_pattern

_TYPES = ("string", "integer", "number", "boolean", "array", "object")
_FORMATS = {"email": "email", "date": "date", "date-time": "date-time", "uri": "uri", "url": "uri"}
# Formats a parameter cannot carry, as the pattern servers check them with (their words too).
_FORMAT_PATTERNS = {
    "uuid": ("a UUID", r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$"),
    "ipv4": ("an IPv4 address", r"^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}"
             r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])$"),
    "byte": ("base64", r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"),
    "time": ("a time, HH:MM:SS with a zone", r"^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
             r"(\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"),
    "duration": ("an ISO 8601 duration, like P1D or PT30M", r"^P(([0-9]+Y([0-9]+M)?([0-9]+D)?"
                 r"|[0-9]+M([0-9]+D)?|[0-9]+D)(T([0-9]+H([0-9]+M)?([0-9]+S)?|[0-9]+M([0-9]+S)?"
                 r"|[0-9]+S))?|T([0-9]+H([0-9]+M)?([0-9]+S)?|[0-9]+M([0-9]+S)?|[0-9]+S)|[0-9]+W)$"),
    "hostname": ("a host name", r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                 r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"),
}  # fmt: skip
# Integer formats bound the value (servers check them as they would a minimum and maximum).
_INTEGER_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**53) + 1, 2**53 - 1)}
_DESCRIPTION_CHARS = 200
_MAX_DECLARED = 40  # fields of one object given as properties; a bigger one stays free-form
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


_SCALARS = frozenset({"string", "integer", "number", "boolean"})


def _one_type(refs: Refs, schema: dict[str, Any], depth: int, text: bool = False) -> dict[str, Any]:
    """Nullable forms (3.1 type lists, anyOf with null, 3.0 nullable) as their one real type.

    With `text` (a path, query or header value: text on the wire), a choice of scalar types
    is a string."""
    kind = schema.get("type")
    if isinstance(kind, list):
        real = [t for t in kind if t != "null"]
        if len(real) != 1 and not (text and real and set(map(str, real)) <= _SCALARS):
            raise Unexpressible(f"a value of several types ({', '.join(map(str, real))})")
        schema = {**schema, "type": real[0] if len(real) == 1 else "string"}
    for key in ("anyOf", "oneOf"):
        choices = listed(schema.get(key))
        if not choices:
            continue
        options = [merged(refs, c, depth + 1) for c in choices]
        real = [o for o in options if o.get("type") != "null"]
        # `""` offered beside a value (to clear it, as Stripe does): the value is what to ask for
        if len(real) > 1:
            real = [o for o in real if o.get("enum") != [""]] or real
        kinds = {str(o.get("type")) for o in real}
        rest = {k: v for k, v in schema.items() if k != key}
        if len(real) == 1:
            schema = {**real[0], **rest}
        elif kinds == {"object"}:
            schema = rest | {"type": "object"}
        elif len(kinds) == 1 and kinds <= _SCALARS:
            # Several forms of one type: the type, and the union of the values if each lists them
            enums = [o.get("enum") for o in real]
            schema = rest | {"type": kinds.pop()}
            values = [v for e in enums if isinstance(e, list) for v in e]
            if all(isinstance(e, list) for e in enums) and not any(
                isinstance(v, dict | list) for v in values
            ):
                schema["enum"] = list(dict.fromkeys(values))
        elif text and kinds <= _SCALARS:
            schema = rest | {"type": "string"}
        else:
            raise Unexpressible(f"{key} of {len(real)} different shapes")
    return schema


def to_param(
    refs: Refs,
    schema: Any,
    *,
    description: str | None = None,
    depth: int = 0,
    text: bool = False,
    levels: int = 0,
) -> dict[str, Any]:
    """The patchbay parameter (as config data) for an OpenAPI schema; raises Unexpressible.

    `text`: the value travels as text (path, query, header), so a choice of scalars is one.
    `levels`: objects with declared fields around this one (bounded by MAX_NESTING)."""
    node = _one_type(refs, merged(refs, schema, depth), depth, text)
    kind = node.get("type")
    if kind is None and "items" in node:
        kind = "array"
    if kind is None and text and "not" not in node:
        kind = "string"  # no type given, and the value travels as text anyway
    if kind not in _TYPES:
        raise Unexpressible("the schema gives no type" if kind is None else f"type {kind!r}")
    param: dict[str, Any] = {"type": kind}
    words = description or node.get("description") or node.get("title")
    declared = _declared(refs, node, levels) if kind == "object" else None
    if declared is not None:
        param["properties"] = declared
        if node.get("additionalProperties") not in (None, False):
            param["additional_properties"] = True
    elif kind == "object" and isinstance(node.get("properties"), Mapping) and node["properties"]:
        # Free-form (nested past MAX_NESTING, or a required field patchbay cannot say): the
        # field names are said in words instead.
        keys = ", ".join(list(node["properties"])[:12])
        words = f"{short(words, 120)} Fields: {keys}." if words else f"Fields: {keys}."
    if words:
        param["description"] = short(words, _DESCRIPTION_CHARS)
    fmt = _FORMATS.get(str(node.get("format"))) if kind == "string" else None
    if fmt:
        param["format"] = fmt
    spelled = _FORMAT_PATTERNS.get(str(node.get("format"))) if kind == "string" else None
    if spelled is not None and not isinstance(node.get("pattern"), str):
        said, param["pattern"] = spelled
        param["description"] = f"{param['description']} ({said})" if words_given(param) else said
    low, high = _INTEGER_RANGES.get(str(node.get("format")), (None, None))
    if kind == "integer" and low is not None:
        param.update(minimum=low, maximum=high)  # narrowed below by the schema's own bounds
    if isinstance(node.get("enum"), list) and node["enum"]:
        param["enum"] = [v for v in node["enum"] if v is not None]
    pattern = node.get("pattern")
    if kind == "string" and isinstance(pattern, str) and _compiles(pattern):
        param["pattern"] = pattern
    for src, dst in (("minimum", "minimum"), ("maximum", "maximum")):
        if isinstance(node.get(src), int | float) and not isinstance(node.get(src), bool):
            param[dst] = node[src]
    _exclusive(node, param, kind)
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
            item = to_param(refs, node["items"], depth=depth + 1, levels=levels)
        except Unexpressible:
            pass  # a list of free-form items: the list itself is still expressible
        else:
            item.pop("description", None)
            param["items"] = item
    default = node.get("default")
    if default is not None and not isinstance(default, Mapping | list):
        param["default"] = default
    return param


def _declared(refs: Refs, node: Mapping[str, Any], levels: int) -> dict[str, Any] | None:
    """An object's fields as parameters, required as the schema's `required` says; None when
    it stays free-form: no fields, too many, nested past MAX_NESTING, or a required field that
    cannot be said. An optional field that cannot be said is left out (never sent)."""
    props = mapping(node.get("properties"))
    if not props or len(props) > _MAX_DECLARED or levels >= MAX_NESTING:
        return None
    required = set(_names(node.get("required")))
    out: dict[str, Any] = {}
    for raw, sub in props.items():
        name = str(raw)
        try:
            if mapping(refs.deref(sub)).get("readOnly"):
                continue  # an answer's field, not something the caller sends
            if not FIELD_NAME.fullmatch(name):
                raise Unexpressible(f"field name {name!r}")
            # depth restarts: it bounds one schema's $ref and allOf chains; levels bound nesting
            child = to_param(refs, sub, levels=levels + 1)
        except (Unexpressible, RefError):
            if name in required:
                return None
            continue
        if name not in required and "default" not in child:
            child["required"] = False
        out[name] = child
    return out or None


def words_given(param: dict[str, Any]) -> bool:
    return bool(param.get("description"))


def _exclusive(node: Mapping[str, Any], param: dict[str, Any], kind: Any) -> None:
    """Exclusive bounds (3.0 flags, 3.1 numbers) as inclusive ones for integers; numbers keep
    the bound and say it in words, since a parameter has no exclusive bound."""
    for excl, dst, step in (
        ("exclusiveMinimum", "minimum", 1),
        ("exclusiveMaximum", "maximum", -1),
    ):
        flag = node.get(excl)
        bound = flag if _number(flag) else node.get(dst) if flag is True else None
        if not isinstance(bound, int | float) or isinstance(bound, bool):
            continue
        if kind == "integer":
            param[dst] = math.floor(bound) + 1 if step > 0 else math.ceil(bound) - 1
        else:
            param[dst] = bound
            side = "more" if step > 0 else "less"
            words = f"{side} than {bound}, not equal"
            param["description"] = (
                f"{param['description']}; {words}" if words_given(param) else words
            )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_MAX_FIELDS = 12


def fields(refs: Refs, schema: Any) -> dict[str, tuple[dict[str, Any], bool]] | None:
    """An object's fields as (parameter, required) when each is a plain value (at most
    `_MAX_FIELDS`) and some are required; else None and the object stays free-form."""
    node = merged(refs, schema)
    props = mapping(node.get("properties"))
    required = set(_names(node.get("required")))
    if not props or len(props) > _MAX_FIELDS or not required & set(props):
        return None
    out = {}
    for name, sub in props.items():
        try:
            if mapping(refs.deref(sub)).get("readOnly"):
                continue
            param = to_param(refs, sub)
        except (Unexpressible, RefError):
            return None
        if param["type"] == "object" or (param["type"] == "array" and "items" not in param):
            return None
        out[str(name)] = (param, str(name) in required)
    return out


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
