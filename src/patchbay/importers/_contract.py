"""The response contract of an operation: its 2xx JSON answer's schema as JSON Schema 2020-12.

OpenAPI 3.0's schema dialect is converted (`nullable`, boolean `exclusiveMinimum`, Swagger's
`x-nullable`), `$ref`s are inlined with a cycle cut to `{}`, and only what checks a shape is
kept: types, properties, required fields, items, enums, bounds. Descriptions, examples,
formats and patterns (ECMA regexes, often looser in practice than written) are dropped, and
depth and size are limited, so the contract stays a readable part of the config that real
answers pass.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from patchbay.importers._source import RefError, Refs, listed, mapping

# Below the suggested root, fields of fields keep their type alone; deeper parts are not checked.
MAX_DEPTH = 2
MAX_NODES = 120  # per contract; past it, the rest keeps its type alone
_TYPES = frozenset({"string", "integer", "number", "boolean", "array", "object", "null"})
_KEPT = ("minItems", "maxItems")


def answer_schema(refs: Refs, responses: Any) -> Any:
    """The schema of the operation's first 2xx JSON answer, or None when there is none."""
    answers = mapping(responses)
    codes = sorted(str(c) for c in answers if str(c).startswith("2"))
    for code in codes:
        try:
            answer = mapping(refs.deref(answers.get(code, answers.get(_int(code)))))
        except RefError:
            return None
        content = mapping(answer.get("content"))
        if content:
            media = next((m for k, m in content.items() if "json" in str(k).lower()), None)
            return mapping(media).get("schema") if media is not None else None
        if "schema" in answer:  # Swagger 2.0
            return answer["schema"]
        return None
    return None


def _int(code: str) -> Any:
    # YAML reads `200:` as an int, JSON as a string; the mapping keeps whichever it was.
    return int(code) if code.isdigit() else code


class _Converter:
    def __init__(self, refs: Refs) -> None:
        self.refs = refs
        self.nodes = 0

    def convert(self, schema: Any, depth: int, seen: frozenset[str], root: Sequence[str]) -> Any:
        if depth > MAX_DEPTH:
            return {}
        if isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
            ref = schema["$ref"]
            if ref in seen:
                return {}  # a schema that contains itself: cut the cycle here
            seen = seen | {ref}
            try:
                schema = self.refs.deref(schema)
            except RefError:
                return {}
        if schema is True or schema is False:
            return schema
        if not isinstance(schema, Mapping):
            return {}
        self.nodes += 1
        if self.nodes > MAX_NODES or depth == MAX_DEPTH:
            return self._shallow(schema)
        return self._node(schema, depth, seen, root)

    def _shallow(self, node: Mapping[str, Any]) -> dict[str, Any]:
        """The node's type alone (nullable included), or `{}` when it has none."""
        kind = node.get("type")
        if not isinstance(kind, str) or kind not in _TYPES:
            return {}
        nullable = node.get("nullable") is True or node.get("x-nullable") is True
        return {"type": [kind, "null"] if nullable and kind != "null" else kind}

    def _node(
        self, node: Mapping[str, Any], depth: int, seen: frozenset[str], root: Sequence[str]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        nullable = node.get("nullable") is True or node.get("x-nullable") is True
        kind = node.get("type")
        if isinstance(kind, str) and kind in _TYPES:
            out["type"] = [kind, "null"] if nullable and kind != "null" else kind
        elif isinstance(kind, list):
            kinds = list(dict.fromkeys(k for k in kind if isinstance(k, str) and k in _TYPES))
            if nullable and "null" not in kinds:
                kinds.append("null")
            if kinds:
                out["type"] = kinds[0] if len(kinds) == 1 else kinds
        enum = node.get("enum")
        if isinstance(enum, list) and enum:
            out["enum"] = [*enum, None] if nullable and None not in enum else list(enum)
        if "const" in node:
            out["const"] = node["const"]
        self._bounds(node, out)
        props = mapping(node.get("properties"))
        hidden: set[str] = set()
        if props:
            out["properties"] = {}
            for name, sub in props.items():
                if self._write_only(sub):
                    hidden.add(str(name))  # sent by the caller, never in an answer
                    continue
                inner = depth if root and root[0] == name else depth + 1
                rest = root[1:] if root and root[0] == name else ()
                converted = self.convert(sub, inner, seen, rest)
                if converted != {}:  # `{}` checks nothing: left out, the contract stays short
                    out["properties"][str(name)] = converted
            if not out["properties"]:
                del out["properties"]
        required = [str(r) for r in listed(node.get("required")) if str(r) not in hidden]
        if required:
            out["required"] = list(dict.fromkeys(required))
        extra = node.get("additionalProperties")
        if extra is False:
            out["additionalProperties"] = False
        elif isinstance(extra, Mapping) and extra:
            values = self.convert(extra, depth + 1, seen, ())
            if values != {}:
                out["additionalProperties"] = values
        if isinstance(node.get("items"), Mapping):
            # The elements' fields are the list's fields: items take no level of their own.
            items = self.convert(node["items"], depth, seen, ())
            if items != {}:
                out["items"] = items
        if listed(node.get("allOf")):
            out["allOf"] = [self.convert(s, depth, seen, root) for s in node["allOf"]]
        # oneOf as anyOf: documents' alternatives overlap often, and an answer matching two
        # of them is not a broken answer.
        choices = [*listed(node.get("anyOf")), *listed(node.get("oneOf"))]
        alternatives = _flat([self.convert(s, depth, seen, root) for s in choices])
        if nullable and "type" not in out and (out or alternatives):
            alternatives = _flat([*alternatives, {"type": "null"}]) if alternatives else []
            if not alternatives:
                return {"anyOf": [out, {"type": "null"}]}
        # One alternative accepts anything: so does the whole.
        if alternatives and {} not in alternatives:
            if len(alternatives) == 1 and not out:
                return alternatives[0]  # type: ignore[no-any-return]
            out["anyOf"] = alternatives
        return out

    @staticmethod
    def _bounds(node: Mapping[str, Any], out: dict[str, Any]) -> None:
        for low, excl in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
            bound, flag = node.get(low), node.get(excl)
            if _number(flag):
                out[excl] = flag  # 3.1: the bound itself
                if _number(bound):
                    out[low] = bound
            elif _number(bound):
                out[excl if flag is True else low] = bound  # 3.0: a flag on the bound
        for key in _KEPT:
            value = node.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                out[key] = value

    def _write_only(self, schema: Any) -> bool:
        try:
            target = self.refs.deref(schema)
        except RefError:
            return False
        return isinstance(target, Mapping) and target.get("writeOnly") is True


def _flat(alternatives: list[Any]) -> list[Any]:
    """Alternatives with nested `anyOf`-only alternatives lifted and repeats removed."""
    out: list[Any] = []
    for alt in alternatives:
        for one in alt["anyOf"] if isinstance(alt, dict) and list(alt) == ["anyOf"] else [alt]:
            if one not in out:
                out.append(one)
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def response_contract(
    refs: Refs, responses: Any, root: str | None = None, memo: dict[Any, Any] | None = None
) -> dict[str, Any] | None:
    """`response.expect` for an operation: its 2xx JSON answer as JSON Schema 2020-12, the
    depth counted from `root` (the suggested JMESPath to the useful part); None when the
    document says nothing that could be checked. `memo` keeps contracts across the
    operations of one document, which share their answers' schemas."""
    schema = answer_schema(refs, responses)
    if schema is None:
        return None
    key = (json.dumps(schema, sort_keys=True, default=str), root)
    if memo is not None and key in memo:
        return memo[key]  # type: ignore[no-any-return]
    path = tuple(root.split(".")) if root else ()
    contract = _Converter(refs).convert(schema, 0, frozenset(), path)
    found = contract if isinstance(contract, dict) and contract else None
    if memo is not None:
        memo[key] = found
    return found
