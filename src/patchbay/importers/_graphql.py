"""GraphQL schemas (SDL or introspection JSON) and documents of named operations as a curated
patchbay config: a `kind: graphql` integration, a tool per operation, variables as parameters.

Input objects are flattened into parameters of their own (an LLM fills flat arguments best)
and rebuilt in `graphql.variables`; lists of input objects stay free-form objects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLArgument,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLSchema,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    TypeInfo,
    TypeInfoVisitor,
    Undefined,
    VariableNode,
    Visitor,
    build_client_schema,
    build_schema,
    get_named_type,
    get_nullable_type,
    is_enum_type,
    is_input_object_type,
    is_list_type,
    is_non_null_type,
    is_scalar_type,
    parse,
    type_from_ast,
    validate,
    value_from_ast,
    visit,
)
from graphql.language import Node
from pydantic import ValidationError

from patchbay.importers._openapi import Imported, Skipped, _matches, param_name, slug, tool_name
from patchbay.importers._schemas import short
from patchbay.importers._source import UnreadableSpec
from patchbay.spec._checks import check_tool
from patchbay.spec._graphql_checks import check_graphql_tool
from patchbay.spec._model import Integration, Tool

_SCALARS = {"Int": "integer", "Float": "number", "String": "string", "Boolean": "boolean"}
_GENERIC = frozenset({"schema", "introspection", "graphql", "sdl", "api", "operations", "ops"})
_IDEMPOTENCY_VARIABLE = re.compile(r"idempotency_?key", re.IGNORECASE)
_MAX_FLAT_DEPTH = 3  # input objects nested deeper stay free-form objects
_DESCRIPTION_CHARS = 300
_PARAM_CHARS = 200


@dataclass
class GraphQLSource:
    """A schema and a document of operations, read and parsed."""

    schema: GraphQLSchema
    document: DocumentNode
    text: str  # the operations' source, for each operation's own text
    schema_name: str  # the schema file's name, for the header
    kind: str  # SDL or introspection JSON


def _read(path: str | FilePath, what: str) -> str:
    try:
        return FilePath(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UnreadableSpec(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UnreadableSpec(f"{what} {path} is not UTF-8 text") from None


def _schema(text: str, where: str) -> tuple[GraphQLSchema, str]:
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UnreadableSpec(f"{where} is not JSON: {exc}") from None
        found = data.get("data", data) if isinstance(data, dict) else None
        if not isinstance(found, dict) or not isinstance(found.get("__schema"), dict):
            raise UnreadableSpec(f"{where} is JSON without __schema: not an introspection result")
        try:
            return build_client_schema(found), "introspection JSON"  # type: ignore[arg-type]
        except (GraphQLError, TypeError, ValueError, KeyError) as exc:
            raise UnreadableSpec(f"{where}: {_first_line(exc)}") from None
    try:
        return build_schema(text), "SDL"
    except GraphQLSyntaxError as exc:
        raise UnreadableSpec(f"{where} is not GraphQL SDL: {_first_line(exc)}") from None
    except (GraphQLError, TypeError) as exc:
        try:  # directives of a gateway or federation the SDL uses but does not define
            return build_schema(text, assume_valid_sdl=True), "SDL"
        except (GraphQLError, TypeError):
            raise UnreadableSpec(f"{where}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def load_graphql(schema: str | FilePath, operations: str | FilePath) -> GraphQLSource:
    """The schema and operations files, parsed; raises UnreadableSpec."""
    built, kind = _schema(_read(schema, "schema"), str(schema))
    text = _read(operations, "operations")
    try:
        document = parse(text)
    except GraphQLSyntaxError as exc:
        raise UnreadableSpec(
            f"{operations} is not a GraphQL document: {_first_line(exc)}"
        ) from None
    if not any(isinstance(d, OperationDefinitionNode) for d in document.definitions):
        raise UnreadableSpec(f"{operations} defines no operation (query or mutation)")
    return GraphQLSource(built, document, text, FilePath(schema).name, kind)


@dataclass
class _Op:
    node: OperationDefinitionNode
    name: str
    kind: str  # query, mutation, subscription
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    key: str | None = None  # the idempotency key template, when a variable takes one


class _Skip(Exception):
    """The operation cannot become a tool; the message says why."""


def import_graphql(
    source: GraphQLSource,
    endpoint: str,
    *,
    integration: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Imported:
    """A patchbay config for the selected operations of `source`, sent to `endpoint`."""
    name = integration or _integration_name(source.schema_name)
    prefix = re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") or "API"
    result = Imported(integration=name, config={})
    fragments = {
        d.name.value: d
        for d in source.document.definitions
        if isinstance(d, FragmentDefinitionNode)
    }
    tools: dict[str, Any] = {}
    used: set[str] = set()
    for node in source.document.definitions:
        if not isinstance(node, OperationDefinitionNode):
            continue
        kind = node.operation.value
        if node.name is None:
            where = f"anonymous {kind} at line {_line(source.text, node)}"
            result.skipped.append(Skipped(where, "an operation needs a name to be sent by name"))
            continue
        op = _Op(node, node.name.value, kind)
        tool = tool_name(op.name, set(used))
        fields = [s.name.value for s in node.selection_set.selections if isinstance(s, FieldNode)]
        if (include and not _matches(include, [op.name, tool, kind, *fields])) or _matches(
            exclude, [op.name, tool, kind, *fields]
        ):
            continue
        where = f"{kind} {op.name}"
        try:
            data = _tool(source, op, fragments, name, tool)
        except _Skip as exc:
            result.skipped.append(Skipped(where, str(exc)))
            continue
        used.add(tool)
        tools[tool] = data
        if op.notes:
            result.comments[("tools", tool)] = op.notes
    integration_data = {"kind": "graphql", "base_url": f"${{{prefix}_URL:-{endpoint}}}"}
    result.config = {"version": 1, "integrations": {name: integration_data}, "tools": tools}
    result.comments[("integrations", name)] = [
        "a GraphQL schema does not say how callers authenticate: add auth if the endpoint needs "
        f"it, e.g. auth: {{type: bearer, secret: env:{prefix}_TOKEN}}"
    ]
    result.env = [f"{prefix}_URL"]
    result.header = (
        f"Imported from {source.schema_name} ({source.kind}) by patchbay import graphql. "
        "Review before use: descriptions are what the LLM reads; delete tools the agent should "
        f"not have. Environment: {prefix}_URL (it defaults to {endpoint})."
    )
    return result


def _integration_name(schema_name: str) -> str:
    stem = FilePath(schema_name).name.split(".")[0]
    found = slug(stem, "graphql")
    return "graphql" if found in _GENERIC else found


def _line(text: str, node: Node) -> int:
    return text.count("\n", 0, node.loc.start) + 1 if node.loc else 0


class _Spreads(Visitor):
    """The names of the fragments a node spreads."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def enter_fragment_spread(self, spread: FragmentSpreadNode, *_: Any) -> None:
        self.names.append(spread.name.value)


def _needed_fragments(
    node: Node, fragments: Mapping[str, FragmentDefinitionNode]
) -> list[FragmentDefinitionNode]:
    """Every fragment `node` spreads, directly or through other fragments, in document order."""
    seen: dict[str, FragmentDefinitionNode] = {}
    todo: list[Node] = [node]
    while todo:
        spreads = _Spreads()
        visit(todo.pop(), spreads)
        for name in spreads.names:
            if name not in seen and name in fragments:
                seen[name] = fragments[name]
                todo.append(fragments[name])
    order = list(fragments)
    return sorted(seen.values(), key=lambda f: order.index(f.name.value))


def _text(source: GraphQLSource, node: Node) -> str:
    assert node.loc is not None
    lines = source.text[node.loc.start : node.loc.end].split("\n")
    return "\n".join(line.rstrip() for line in lines)


def _tool(
    source: GraphQLSource,
    op: _Op,
    fragments: Mapping[str, FragmentDefinitionNode],
    integration: str,
    name: str,
) -> dict[str, Any]:
    if op.kind == "subscription":
        raise _Skip("a subscription streams events; a tool call answers once")
    needed = _needed_fragments(op.node, fragments)
    document = DocumentNode(definitions=(op.node, *needed))
    errors = validate(source.schema, document)
    if errors:
        raise _Skip(f"does not match the schema: {errors[0].message}")
    query = "\n\n".join(_text(source, n) for n in (op.node, *needed)) + "\n"
    descriptions = _argument_descriptions(source.schema, document)
    variables = _variables(source.schema, op, descriptions, name)
    graphql: dict[str, Any] = {"operation": op.name, "query": query}
    if variables:
        graphql["variables"] = variables
    data: dict[str, Any] = {
        "integration": integration,
        "description": _description(source, op),
        "parameters": op.params,
        "graphql": graphql,
    }
    top = op.node.selection_set.selections
    if len(top) == 1 and isinstance(top[0], FieldNode):
        data["response"] = {"root": (top[0].alias or top[0].name).value}
    if op.kind == "mutation":
        if op.key is not None:
            data["idempotency"] = {"key": op.key}
            op.notes.append(
                "idempotency key: one per call and the ids given, sent as the operation's key "
                "variable and the Idempotency-Key header; a send in doubt is retried with it"
            )
        else:
            op.notes.append(
                "a mutation: never resent without an idempotency key; if the API honours an "
                "Idempotency-Key header, add idempotency: {key: ...} so retries are safe"
            )
    _check(name, data, integration)
    return data


def _description(source: GraphQLSource, op: _Op) -> str:
    """The comment lines right above the operation, else its fields' schema descriptions."""
    assert op.node.loc is not None
    before = source.text[: op.node.loc.start].rstrip("\n").split("\n")
    comment: list[str] = []
    for line in reversed(before):
        if not line.strip().startswith("#"):
            break
        comment.insert(0, line.strip().lstrip("#").strip())
    text = " ".join(c for c in comment if c)
    if not text:
        root = source.schema.get_root_type(op.node.operation)
        for selection in op.node.selection_set.selections:
            found = (
                root.fields.get(selection.name.value)
                if root and isinstance(selection, FieldNode)
                else None
            )
            if found is not None and found.description:
                text = f"{text} {found.description}".strip()
    if not text:
        op.notes.append("no description in the document: say when the agent should call this")
        return f"GraphQL {op.kind} {op.name}"
    cut = short(text, _DESCRIPTION_CHARS)
    if len(cut) < len(" ".join(text.split())):
        op.notes.append("description cut: keep what the LLM needs")
    return cut


def _argument_descriptions(schema: GraphQLSchema, document: DocumentNode) -> dict[str, str]:
    """Variable name -> the description of the argument or input field it is passed as."""
    found: dict[str, str] = {}
    info = TypeInfo(schema)

    class _Uses(Visitor):
        def enter_variable(self, node: VariableNode, *_: Any) -> None:
            arg: GraphQLArgument | None = info.get_argument()
            if arg is not None and arg.description:
                found.setdefault(node.name.value, arg.description)

    visit(document, TypeInfoVisitor(info, _Uses()))
    return found


def _variables(
    schema: GraphQLSchema, op: _Op, descriptions: Mapping[str, str], tool: str
) -> dict[str, Any]:
    template: dict[str, Any] = {}
    for definition in op.node.variable_definitions or ():
        var = definition.variable.name.value
        given = type_from_ast(schema, definition.type)
        if given is None:
            raise _Skip(f"variable ${var}: unknown type")
        gtype: GraphQLInputType = given  # type: ignore[assignment]
        default = (
            value_from_ast(definition.default_value, gtype)
            if definition.default_value is not None
            else None
        )
        required = is_non_null_type(gtype) and definition.default_value is None
        named = get_nullable_type(gtype)
        if op.kind == "mutation" and _IDEMPOTENCY_VARIABLE.fullmatch(var) and _is_string(named):
            op.key = f"{{call.id}}_{tool}"
            template[var] = op.key
            continue
        if is_input_object_type(named):
            assert isinstance(named, GraphQLInputObjectType)
            template[var] = _flatten(op, named, var, required, 1)
            continue
        param = _param(op, gtype, descriptions.get(var))
        if definition.default_value is not None and not isinstance(default, list | dict):
            param["default"] = _plain(default)
        elif not required:
            param["required"] = False
        arg = param_name(var, op.used, "var")
        op.params[arg] = param
        template[var] = f"{{args.{arg}}}"
    if op.key is not None:
        ids = [n for n, p in op.params.items() if p.get("required", True) and _id_like(n)][:2]
        op.key = "_".join([op.key, *(f"{{args.{n}}}" for n in ids)])
        template = {k: op.key if v == f"{{call.id}}_{tool}" else v for k, v in template.items()}
    return template


def _id_like(name: str) -> bool:
    return name.lower().endswith("id") and not name.lower().endswith("methodid")


def _is_string(gtype: Any) -> bool:
    return is_scalar_type(gtype) and gtype.name in ("String", "ID")


def _plain(value: Any) -> Any:
    """A default as config data (enum values come back as their names)."""
    return value if isinstance(value, str | int | float | bool) else str(value)


def _flatten(
    op: _Op, input_type: GraphQLInputObjectType, path: str, required: bool, depth: int
) -> Any:
    """An input object's fields as parameters of their own; its template rebuilds it."""
    if depth > _MAX_FLAT_DEPTH:
        op.notes.append(f"{path}: nested too deep to flatten; given as a free-form object")
        return _free_form(op, input_type, path, required)
    template: dict[str, Any] = {}
    for fname, fdef in input_type.fields.items():
        ftype = fdef.type
        frequired = required and is_non_null_type(ftype) and fdef.default_value is Undefined
        named = get_nullable_type(ftype)
        if is_input_object_type(named):
            assert isinstance(named, GraphQLInputObjectType)
            template[fname] = _flatten(op, named, f"{path}.{fname}", frequired, depth + 1)
            continue
        param = _param(op, ftype, fdef.description)
        if not frequired:
            param["required"] = False
        arg = param_name(fname, op.used, path.split(".")[-1])
        op.params[arg] = param
        template[fname] = f"{{args.{arg}}}"
    return template


def _free_form(op: _Op, input_type: GraphQLInputObjectType, path: str, required: bool) -> str:
    param: dict[str, Any] = {"type": "object", "description": _fields_words(input_type)}
    if not required:
        param["required"] = False
    arg = param_name(path.replace(".", "_"), op.used, "var")
    op.params[arg] = param
    return f"{{args.{arg}}}"


def _fields_words(input_type: GraphQLInputObjectType) -> str:
    parts = [
        f"{n} ({get_named_type(f.type).name}{', required' if is_non_null_type(f.type) else ''})"
        for n, f in input_type.fields.items()
    ]
    return short(f"{input_type.name} with fields: {', '.join(parts)}", _PARAM_CHARS)


def _param(op: _Op, gtype: Any, description: str | None) -> dict[str, Any]:
    """A parameter for a scalar, enum or list input type."""
    named = get_nullable_type(gtype)
    param: dict[str, Any]
    if is_list_type(named):
        inner = named.of_type
        inner_named = get_nullable_type(inner)
        if is_input_object_type(inner_named):
            item: dict[str, Any] = {"type": "object"}
            description = " ".join(filter(None, [description, _fields_words(inner_named)]))
        else:
            item = _param(op, inner, None)
        param = {"type": "array", "items": item}
    elif is_enum_type(named):
        values = [n for n, v in named.values.items() if not v.deprecation_reason]
        param = {"type": "string", "enum": values}
    elif is_scalar_type(named) and named.name in _SCALARS:
        param = {"type": _SCALARS[named.name]}
    elif is_scalar_type(named) and named.name == "ID":
        param = {"type": "string"}
    else:
        param = {"type": "string"}
        words = f"{named.name}: {named.description}" if named.description else named.name
        description = " ".join(filter(None, [description, f"({words})"]))
        op.notes.append(
            f"custom scalar {named.name} is sent as text: check the format the API expects"
        )
    if description:
        param = {**param, "description": short(description, _PARAM_CHARS)}
    return param


def _check(name: str, data: Mapping[str, Any], integration: str) -> None:
    """Refuse a tool `patchbay validate` would refuse, so the output passes as it is."""
    try:
        tool = Tool.model_validate({**data, "name": name})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise _Skip(f"not expressible as a tool: {where}: {first['msg']}") from None
    stand_in = Integration(name=integration, kind="graphql", base_url="http://localhost")
    errors = check_tool(tool, f"tools.{name}", None, None)
    errors += check_graphql_tool(tool, f"tools.{name}", {integration: stand_in})
    if errors:
        raise _Skip(f"not expressible as a tool: {errors[0]}")
