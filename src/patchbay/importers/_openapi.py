"""OpenAPI 3.0/3.1 and Swagger 2.0 documents as a curated patchbay config: one integration, a
tool per selected operation, what cannot be expressed skipped with a reason."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from pydantic import ValidationError

from patchbay.importers._contract import response_contract
from patchbay.importers._integration import integration as find_integration
from patchbay.importers._schemas import (
    Unexpressible,
    fields,
    merged,
    root_suggestion,
    short,
    to_param,
)
from patchbay.importers._source import RefError, Refs, listed, mapping
from patchbay.importers._yaml import Path, dump
from patchbay.spec._checks import check_tool
from patchbay.spec._model import Tool

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_SENT = frozenset({"get", "put", "post", "patch", "delete"})
# Set by patchbay itself (auth, JSON content negotiation): never an argument of the LLM's.
_OWN_HEADERS = frozenset({"authorization", "content-type", "accept", "content-length"})
_IDEMPOTENCY_HEADERS = frozenset({"idempotency-key", "x-idempotency-key"})
_DESCRIPTION_CHARS = 300
_OWN = frozenset({"name", "in", "required", "description", "allowEmptyValue"})
_NAME_CHARS = 64


@dataclass(frozen=True)
class Skipped:
    """An operation or parameter left out of the config, and why."""

    what: str
    reason: str

    def __str__(self) -> str:
        return f"{self.what}: {self.reason}"


@dataclass
class Imported:
    """The config an import produced, as data, plus its comments, skips and env names."""

    integration: str
    config: dict[str, Any]
    comments: dict[Path, list[str]] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    header: str = ""

    def to_yaml(self) -> str:
        """The config as commented YAML, ready for `patchbay validate`."""
        return dump(self.config, self.comments, self.header)


class _Skip(Exception):
    """The operation cannot become a tool; the message says why."""


def slug(text: str, fallback: str = "api") -> str:
    """A lower-case identifier from free text (an API's title)."""
    words = re.sub(r"[^a-z0-9]+", "_", _snake(text).lower()).strip("_")[:40].strip("_")
    # "Billing API" -> billing: the name prefixes env names (BILLING_API_KEY, not ..._API_API_KEY)
    words = re.sub(r"(?:_(?:api|rest|openapi|service|http))+$", "", words)
    if not words:
        return fallback
    return words if words[0].isalpha() else f"{fallback}_{words}"


def _snake(text: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text)


def tool_name(raw: str, used: set[str]) -> str:
    """A name every LLM format accepts (1-64 of `[A-Za-z0-9_-]`, not starting with a digit or
    '-'), snake_case and not yet in `used` (which it joins)."""
    name = re.sub(r"\{([^{}]*)\}", r"by_\1", raw)
    name = re.sub(r"[^a-z0-9]+", "_", _snake(name).lower()).strip("_") or "operation"
    if not name[0].isalpha():
        name = f"op_{name}"
    name = name[:_NAME_CHARS].rstrip("_")
    candidate, n = name, 2
    while candidate in used:
        suffix = f"_{n}"
        candidate = name[: _NAME_CHARS - len(suffix)].rstrip("_") + suffix
        n += 1
    used.add(candidate)
    return candidate


def param_name(raw: str, used: set[str], prefix: str) -> str:
    """A parameter name patchbay accepts (`[A-Za-z_][A-Za-z0-9_]{0,63}`), unique in a tool."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", raw).strip("_") or prefix
    if name[0].isdigit():
        name = f"_{name}"
    name = name[:_NAME_CHARS]
    if name in used:
        name = f"{prefix}_{name}"[:_NAME_CHARS]
    candidate, n = name, 2
    while candidate in used:
        candidate = f"{name[:60]}_{n}"
        n += 1
    used.add(candidate)
    return candidate


def _matches(patterns: Sequence[str], names: Iterable[str]) -> bool:
    lowered = [n.lower() for n in names]
    return any(fnmatchcase(n, p.lower()) for p in patterns for n in lowered)


@dataclass
class _Operation:
    method: str
    path: str
    op: Mapping[str, Any]
    params: list[Mapping[str, Any]]
    where: str = ""
    notes: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.where = f"{self.method.upper()} {self.path}"


def import_openapi(
    doc: Mapping[str, Any],
    *,
    uri: str = "urn:patchbay:openapi",
    integration: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    contracts: bool = True,
) -> Imported:
    """A patchbay config for the selected operations of an OpenAPI or Swagger document.

    With `contracts`, each tool carries the `response.expect` its document declares for a
    2xx answer."""
    refs = Refs(doc, uri)
    info = doc.get("info") if isinstance(doc.get("info"), Mapping) else {}
    assert isinstance(info, Mapping)
    name = integration or slug(str(info.get("title") or ""))
    prefix = re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") or "API"
    found = find_integration(doc, refs, prefix)
    result = Imported(integration=name, config={})
    tools: dict[str, Any] = {}
    used: set[str] = set()
    memo: dict[Any, Any] = {}  # contracts by answer schema: operations share their answers
    for op in _operations(doc, refs, result.skipped):
        names = [str(op.op.get("operationId") or ""), op.path, op.where]
        names += [str(t) for t in listed(op.op.get("tags"))]
        if (include and not _matches(include, names)) or _matches(exclude, names):
            continue
        if op.method not in _SENT:
            result.skipped.append(Skipped(op.where, "patchbay sends GET, POST, PUT, PATCH, DELETE"))
            continue
        raw = str(op.op.get("operationId") or f"{op.method} {op.path}")
        tool = tool_name(raw, used)
        try:
            data = _tool(refs, op, name, tool, memo if contracts else None)
        except _Skip as exc:
            used.discard(tool)
            result.skipped.append(Skipped(op.where, str(exc)))
            continue
        result.skipped += op.skipped
        tools[tool] = data
        if op.notes:
            result.comments[("tools", tool)] = op.notes
    result.config = {"version": 1, "integrations": {name: found.data}, "tools": _literal(tools)}
    if found.notes:
        result.comments[("integrations", name)] = found.notes
    result.env = [f"{prefix}_URL", *(e for e in found.env if e != f"{prefix}_URL")]
    title = " ".join(str(info.get(k) or "") for k in ("title", "version")).strip()
    kind = f"OpenAPI {doc['openapi']}" if "openapi" in doc else f"Swagger {doc.get('swagger')}"
    result.header = (
        f"Imported from {title or 'an API description'} ({kind}) by patchbay import openapi. "
        "Review before use: descriptions are what the LLM reads; delete tools the agent should "
        f"not have. Environment: {', '.join(result.env)} ({prefix}_URL has a default)."
    )
    return result


def _literal(value: Any) -> Any:
    """`value` with every `${` escaped as `$${`: the document's text is not interpolated."""
    if isinstance(value, str):
        return value.replace("${", "$${")
    if isinstance(value, dict):
        return {_literal(k): _literal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v) for v in value]
    return value


def _operations(doc: Mapping[str, Any], refs: Refs, skipped: list[Skipped]) -> list[_Operation]:
    out = []
    for path, raw_item in mapping(doc.get("paths")).items():
        try:
            item = refs.deref(raw_item)
        except RefError as exc:
            skipped.append(Skipped(str(path), str(exc)))
            continue
        if not isinstance(item, Mapping):
            continue
        shared = listed(item.get("parameters"))
        for method in _METHODS:
            op = item.get(method)
            if isinstance(op, Mapping):
                params = [*shared, *listed(op.get("parameters"))]
                out.append(_Operation(method, str(path), op, params))
    return out


def _description(op: _Operation, tool: str) -> str:
    summary = short(op.op.get("summary"), _DESCRIPTION_CHARS)
    long = " ".join(str(op.op.get("description") or "").split())
    if summary:
        return summary
    if not long:
        op.notes.append("no summary in the document: say when the agent should call this")
        return f"{op.method.upper()} {op.path}"
    text = short(long, _DESCRIPTION_CHARS)
    if len(text) < len(long):
        op.notes.append(
            f"description cut from {len(long)} to {len(text)} characters: keep what the LLM needs"
        )
    return text


def _tool(
    refs: Refs,
    op: _Operation,
    integration: str,
    name: str,
    contracts: dict[Any, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"integration": integration, "description": _description(op, name)}
    used: set[str] = set()
    params: dict[str, Any] = {}
    request: dict[str, Any] = {"method": op.method.upper(), "path": op.path}
    query: dict[str, str] = {}
    headers: dict[str, str] = {}
    idempotency: str | None = None
    body_schema: Any = None
    encoding = "json"
    form: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    declared: dict[tuple[str, str], Mapping[str, Any]] = {}
    for raw in op.params:
        try:
            p = refs.deref(raw)
        except RefError as exc:
            raise _Skip(str(exc)) from None
        if isinstance(p, Mapping):
            declared[(str(p.get("in")), str(p.get("name")))] = p  # the operation's own wins
    for (where, pname), p in declared.items():
        required = bool(p.get("required")) or where == "path"
        if where == "body":
            body_schema = p.get("schema", {})
            continue
        if where == "header" and pname.lower() in _IDEMPOTENCY_HEADERS:
            idempotency = pname
            continue
        if where == "header" and pname.lower() in _OWN_HEADERS:
            continue
        # Swagger 2.0 keeps the type on the parameter itself
        schema = p["schema"] if "schema" in p else {k: v for k, v in p.items() if k not in _OWN}
        if where == "formData":  # Swagger 2.0's form fields: one form body
            form["properties"][pname] = {**schema, "description": p.get("description")}
            form["required"] += [pname] if required else []
            continue
        if where not in ("path", "query", "header"):
            _unexpressed(
                op, f"parameter {pname!r}", f"{where} parameters are not supported", required
            )
            continue
        try:
            param = to_param(refs, schema, description=p.get("description"), text=True)
        except Unexpressible as exc:
            _unexpressed(op, f"parameter {pname!r}", str(exc), required)
            continue
        arg = param_name(pname, used, where)
        # An empty path segment changes the path; an empty query value is refused unless the
        # parameter says `allowEmptyValue`.
        empty = where == "path" or (where == "query" and not p.get("allowEmptyValue"))
        if empty and param["type"] == "string" and not param.get("min_length"):
            param["min_length"] = 1
        if where == "query" and required and param["type"] == "array":
            param.setdefault("min_items", 1)  # an empty list sends nothing at all
        if where == "header" and param["type"] == "string" and not _constrained(param):
            param["pattern"] = _HEADER_TEXT
        _mark_required(param, required)
        params[arg] = param
        if where == "path":
            request["path"] = request["path"].replace(f"{{{pname}}}", f"{{{arg}}}")
        elif where == "query":
            query[pname] = f"{{args.{arg}}}"
        else:
            headers[pname] = f"{{args.{arg}}}"
    declared_path = {pname for where, pname in declared if where == "path"}
    for pname in re.findall(r"\{([^{}]+)\}", op.path):
        if pname not in declared_path:  # documents forget these: the path needs it all the same
            arg = param_name(pname, used, "path")
            params[arg] = {"type": "string", "min_length": 1}
            request["path"] = request["path"].replace(f"{{{pname}}}", f"{{{arg}}}")
            op.notes.append(f"path parameter {pname!r} is not declared: typed as a string")
    if form["properties"]:
        body_schema, encoding = form, "form"
    if "requestBody" in op.op:
        body_schema, encoding = _request_body(refs, op)
    body = None
    if body_schema is not None:
        body = _body(refs, op, body_schema, params, used, form=encoding == "form")
    if query:
        request["query"] = query
    if headers:
        request["headers"] = headers
    if body is not None:
        if encoding == "form":
            request["body_encoding"] = "form"
        request["body"] = body
    data["parameters"] = params
    data["request"] = request
    if op.method != "get":
        data["write"] = True
    if op.method == "delete":
        op.notes.append("DELETE removes data: keep this tool only if the agent should do this")
    if op.op.get("deprecated"):
        op.notes.append("the API marks this operation deprecated")
    root = root_suggestion(refs, op.op.get("responses"))
    if root:
        op.notes.append(f"the answer wraps its content: consider response: {{root: {root}}}")
    responses = op.op.get("responses")
    expect = response_contract(refs, responses, root, contracts) if contracts is not None else None
    if expect is not None:
        data["response"] = {"expect": expect}
    if idempotency is not None:
        data["idempotency"] = _idempotency(name, idempotency, params, op)
    _check(name, data)
    return data


# A header value: visible ASCII, spaces inside only (what servers accept in a field value).
_HEADER_TEXT = r"^[!-~]([ -~]*[!-~])?$"


def _constrained(param: Mapping[str, Any]) -> bool:
    return any(k in param for k in ("enum", "pattern", "format"))


def _mark_required(param: dict[str, Any], required: bool) -> None:
    # patchbay's parameters are required unless they have a default or say otherwise.
    if not required and "default" not in param:
        param["required"] = False


def _unexpressed(op: _Operation, what: str, reason: str, required: bool) -> None:
    if required:
        raise _Skip(f"required {what}: {reason}")
    op.skipped.append(Skipped(f"{op.where} {what}", reason))


def _request_body(refs: Refs, op: _Operation) -> tuple[Any, str]:
    """The body's schema and encoding (json, else form); (None, json) when there is none."""
    try:
        body = refs.deref(op.op["requestBody"])
    except RefError as exc:
        raise _Skip(str(exc)) from None
    content = body.get("content") if isinstance(body, Mapping) else None
    required = bool(body.get("required")) if isinstance(body, Mapping) else False
    if not isinstance(content, Mapping) or not content:
        return None, "json"
    kinds = {str(media).split(";")[0].strip().lower(): spec for media, spec in content.items()}
    for kind, spec in kinds.items():
        # `*/*` and `application/*` take JSON as well as anything
        if kind in ("application/json", "*/*", "application/*") or kind.endswith("+json"):
            return (spec.get("schema", {}) if isinstance(spec, Mapping) else {}), "json"
    spec = kinds.get("application/x-www-form-urlencoded", False)
    if spec is not False:
        return (spec.get("schema", {}) if isinstance(spec, Mapping) else {}), "form"
    reason = f"a request body of {', '.join(map(str, content))} (JSON and form bodies are sent)"
    _unexpressed(op, "body", reason, required)
    return None, "json"


def _body(
    refs: Refs,
    op: _Operation,
    schema: Any,
    params: dict[str, Any],
    used: set[str],
    *,
    form: bool,
) -> Any:
    try:
        node = merged(refs, schema)
    except Unexpressible as exc:
        raise _Skip(f"request body: {exc}") from None
    props = node.get("properties")
    if form and not (isinstance(props, Mapping) and props):
        if node.get("additionalProperties") not in (None, False):
            op.notes.append("the form body takes fields the document does not name: none sent")
        return None  # nothing named to send (Stripe's GETs declare such an empty form)
    if node.get("type") == "object" and isinstance(props, Mapping) and props:
        required = {str(r) for r in listed(node.get("required"))}
        body: dict[str, Any] = {}
        for prop, sub in props.items():
            try:
                target = refs.deref(sub)
                if isinstance(target, Mapping) and target.get("readOnly"):
                    continue  # an answer's field, not something the caller sends
                param = to_param(refs, sub)
                inner = fields(refs, sub) if param["type"] == "object" else None
            except (Unexpressible, RefError) as exc:
                _unexpressed(op, f"body field {prop!r}", str(exc), prop in required)
                continue
            # A required object whose fields the API checks: each field an argument of its own.
            # (Not an optional one: with none of its fields given, `{}` would still be sent.)
            if inner is not None and prop in required:
                body[str(prop)] = _nested(str(prop), inner, params, used)
                continue
            arg = param_name(str(prop), used, "body")
            _mark_required(param, prop in required)
            params[arg] = param
            body[str(prop)] = f"{{args.{arg}}}"
        return body
    try:
        param = to_param(refs, node)
    except Unexpressible as exc:
        if node.get("type"):
            raise _Skip(f"request body: {exc}") from None
        param = {"type": "object"}  # a body of any JSON: free-form for the LLM
    param.setdefault("description", "The request body.")
    arg = param_name("body", used, "body")
    params[arg] = param
    return f"{{args.{arg}}}"


def _nested(
    prop: str,
    inner: Mapping[str, tuple[dict[str, Any], bool]],
    params: dict[str, Any],
    used: set[str],
) -> dict[str, str]:
    """The body template of a required object whose fields are arguments of their own."""
    template = {}
    for name, (param, required) in inner.items():
        arg = param_name(f"{prop}_{name}", used, "body")
        _mark_required(param, required)
        params[arg] = param
        template[name] = f"{{args.{arg}}}"
    return template


def _idempotency(
    tool: str, header: str, params: Mapping[str, Any], op: _Operation
) -> dict[str, Any]:
    """A key per call and per the identifying arguments: a retry reuses it, a new write not."""
    ids = [
        n
        for n, p in params.items()
        if p.get("required", True) and "default" not in p and n.lower().endswith("id")
    ][:2]
    key = "_".join([f"{{call.id}}_{tool}", *(f"{{args.{n}}}" for n in ids)])
    op.notes.append(
        "idempotency key: one per call"
        + (f" and {', '.join(ids)}" if ids else "")
        + "; add arguments if one call may make this write twice on purpose"
    )
    out: dict[str, Any] = {"key": key}
    if header != "Idempotency-Key":
        out["header"] = header
    return out


def _check(name: str, data: Mapping[str, Any]) -> None:
    """Refuse a tool `patchbay validate` would refuse, so the output passes as it is."""
    try:
        tool = Tool.model_validate({**data, "name": name})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise _Skip(f"not expressible as a tool: {where}: {first['msg']}") from None
    errors = check_tool(tool, f"tools.{name}", None, None)
    if errors:
        raise _Skip(f"not expressible as a tool: {errors[0]}")
