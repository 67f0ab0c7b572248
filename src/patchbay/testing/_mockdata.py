"""What `patchbay mock` answers: declared routes, examples, OpenAPI examples, minimal bodies.

Pure functions and records, no server: a route per declared operation (tool requests and an
integration's `operations`), the arguments a request carries, the example that answers them,
and, without one, a body built so that the tool's `response` (root, fields) finds what it reads.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jmespath
import yaml

from patchbay.spec import Config, Example, Integration, ResponseSpec, Tool

__all__ = [
    "Answer",
    "Route",
    "load_openapi_answers",
    "minimal_body",
    "pick_example",
    "routes_for",
    "template_key",
]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_ANY_PARAM = re.compile(r"\{[^}]*\}")
_ID_LIKE = re.compile(r"(^|_)(id|number|reference)$")
_MAX_SCHEMA_DEPTH = 6


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer the mock sends: status, JSON body (None: no body) and extra headers."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Route:
    """One declared method and path template, and where a request's arguments sit in it."""

    method: str
    template: str
    pattern: re.Pattern[str]
    path_args: Mapping[str, str]  # regex group -> argument name
    tool: Tool | None = None
    examples: tuple[Example, ...] = ()
    query_args: Mapping[str, str] = field(default_factory=dict)  # query name -> argument
    body_args: tuple[tuple[tuple[str, ...], str], ...] = ()  # (body key path, argument)
    idempotency_header: str = "Idempotency-Key"

    @property
    def specificity(self) -> tuple[int, int]:
        """Literal templates before parameterised ones: /customers/search before /{id}."""
        return (-len(self.path_args), len(_ANY_PARAM.sub("", self.template)))

    def arguments(self, path: str, query: Mapping[str, str], body: Any) -> dict[str, Any]:
        """The arguments this request carries, by the tool's (or operation's) names."""
        match = self.pattern.fullmatch(path)
        found: dict[str, Any] = {}
        if match is not None:
            found.update({self.path_args[g]: v for g, v in match.groupdict().items()})
        if self.tool is None:  # an operation: every query parameter and top-level body field
            found.update(query)
            if isinstance(body, dict):
                found.update(body)
            return found
        found.update({arg: query[name] for name, arg in self.query_args.items() if name in query})
        for keys, arg in self.body_args:
            value: Any = body
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None:
                found[arg] = value
        return found


def template_key(method: str, template: str) -> tuple[str, str]:
    """A method and path template with parameter names dropped, to compare across sources."""
    return method.upper(), _ANY_PARAM.sub("{}", "/" + template.strip("/"))


def _arg_name(placeholder: str, *, bare_is_arg: bool) -> str | None:
    if placeholder.startswith("args."):
        return placeholder.removeprefix("args.")
    if bare_is_arg and "." not in placeholder:
        return placeholder
    return None  # {call.id}, {call.state.x}: not the LLM's arguments


def _compile(template: str) -> tuple[re.Pattern[str], dict[str, str]]:
    parts: list[str] = []
    groups: dict[str, str] = {}
    last = 0
    for i, match in enumerate(_PLACEHOLDER.finditer(template)):
        parts.append(re.escape(template[last : match.start()]))
        group = f"p{i}"
        arg = _arg_name(match.group(1), bare_is_arg=True)
        if arg is not None:
            groups[group] = arg
        parts.append(f"(?P<{group}>[^/]+)")
        last = match.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts)), groups


def _body_args(template: Any, at: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        arg = _arg_name(whole.group(1), bare_is_arg=False) if whole else None
        if arg is not None:
            yield at, arg
    elif isinstance(template, Mapping):
        for key, value in template.items():
            yield from _body_args(value, (*at, str(key)))


def _tool_route(tool: Tool) -> Route:
    assert tool.request is not None
    spec = tool.request
    pattern, groups = _compile("/" + spec.path.lstrip("/"))
    query = {}
    for name, value in spec.query.items():
        whole = _PLACEHOLDER.fullmatch(value) if isinstance(value, str) else None
        arg = _arg_name(whole.group(1), bare_is_arg=False) if whole else None
        if arg is not None:
            query[name] = arg
    header = tool.idempotency.header if tool.idempotency else "Idempotency-Key"
    return Route(
        method=spec.method,
        template="/" + spec.path.lstrip("/"),
        pattern=pattern,
        path_args=groups,
        tool=tool,
        examples=tool.examples,
        query_args=query,
        body_args=tuple(_body_args(spec.body)),
        idempotency_header=header,
    )


def routes_for(config: Config, integration: Integration) -> list[Route]:
    """Every route the mock of `integration` serves, most specific template first."""
    routes = [
        _tool_route(tool)
        for tool in config.tools.values()
        if tool.integration == integration.name and tool.request is not None
    ]
    seen = {template_key(r.method, r.template) for r in routes}
    for op in integration.operations:
        key = template_key(op.method, op.path)
        if key in seen:
            continue
        seen.add(key)
        pattern, groups = _compile("/" + op.path.lstrip("/"))
        routes.append(
            Route(op.method, "/" + op.path.lstrip("/"), pattern, groups, examples=op.examples)
        )
    return sorted(routes, key=lambda r: r.specificity, reverse=True)


def _same(expected: Any, given: Any) -> bool:
    if expected == given:
        return True
    if isinstance(given, str) and not isinstance(expected, dict | list):
        # path and query values arrive as text: 24700 and "24700" are the same argument
        text = json.dumps(expected) if isinstance(expected, bool) else str(expected)
        return text == given
    return False


def pick_example(route: Route, args: Mapping[str, Any]) -> Example | None:
    """The first example whose arguments all agree with the request's; else the first 2xx one.

    An argument the request does not carry where the mock can see it (a handler's, or one only
    in `call.state`) does not count against an example.
    """
    for example in route.examples:
        if all(_same(v, args[k]) for k, v in example.args.items() if k in args):
            return example
    return next((e for e in route.examples if e.answer.status < 300), None)


def _leaf(name: str, args: Mapping[str, Any], counter: Iterator[int]) -> Any:
    if name in args:
        return args[name]
    if _ID_LIKE.search(name):
        return f"{name}_{next(counter)}"  # distinct per answer, so replays are visible
    return "example"


def _plant(node: dict[str, Any], ast: Mapping[str, Any], value: Any) -> None:
    """Make `node` hold what the JMESPath `ast` reads, ending in `value` where it names one."""
    kind = ast.get("type")
    if kind == "field":
        node.setdefault(ast["value"], value)
    elif kind == "subexpression":
        head, tail = ast["children"]
        inner = _container(node, head)
        if inner is not None:
            _plant(inner, tail, value)
    elif kind == "comparator":
        left, right = ast["children"]
        if right.get("type") == "literal" and ast.get("value") == "eq":
            _plant(node, left, right["value"])
        else:
            _plant(node, left, value)
    elif kind in ("and_expression", "or_expression", "not_expression", "function_expression"):
        for child in ast.get("children", ()):
            if isinstance(child, Mapping):
                _plant(node, child, value)
    elif kind in ("index_expression", "projection", "flatten"):
        inner = _container(node, ast)
        tail = ast["children"][-1] if kind == "projection" else None
        if inner is not None and tail is not None and tail.get("type") != "identity":
            _plant(inner, tail, value)


def _container(node: dict[str, Any], ast: Mapping[str, Any]) -> dict[str, Any] | None:
    """The object inside `node` that `ast` leads to, made if absent (a list gets one item)."""
    kind = ast.get("type")
    if kind == "field":
        current = node.get(ast["value"])
        if not isinstance(current, dict | list):
            current = node[ast["value"]] = {}
        if isinstance(current, list):
            if not current or not isinstance(current[0], dict):
                current[:] = [{}]
            return current[0]  # type: ignore[no-any-return]
        return current
    if kind == "subexpression":
        head, tail = ast["children"]
        inner = _container(node, head)
        return _container(inner, tail) if inner is not None else None
    if kind in ("index_expression", "projection", "flatten"):
        head = ast["children"][0]
        if head.get("type") in ("index_expression", "projection", "flatten"):
            return _container(node, head)
        if head.get("type") != "field":
            return None
        items = node.get(head["value"])
        if not isinstance(items, list) or not items or not isinstance(items[0], dict):
            items = node[head["value"]] = [{}]
        return items[0]  # type: ignore[no-any-return]
    return None


def minimal_body(
    response: ResponseSpec, args: Mapping[str, Any], counter: Iterator[int] | None = None
) -> Any:
    """A small body in which the tool's `response` finds every field it reads.

    `root: data.customer` with `fields: {name: name}` gives `{"data": {"customer": {"name": ..}}}`;
    a comparison (`status == 'completed'`) gets the value that makes it true; a field named like
    an argument echoes it. Without `fields`, the request's arguments are echoed.
    """
    counter = counter if counter is not None else itertools.count(1)
    inner: dict[str, Any] = {}
    if response.fields is None:
        inner.update(args)
    for out, expr in (response.fields or {}).items():
        try:
            ast = jmespath.compile(expr).parsed
        except jmespath.exceptions.JMESPathError:
            continue  # the config check reports it; the mock still answers
        last = _last_name(ast) or out
        _plant(inner, ast, _leaf(last if last in args else out, args, counter))
    found: Any = inner
    if response.summarize is not None:  # a list of one such item, where the summary looks
        if response.summarize.path:
            found = {}
            _plant(found, jmespath.compile(response.summarize.path).parsed, [inner])
        else:
            found = [inner]
    if not response.root:
        return found
    body: dict[str, Any] = {}
    _plant(body, jmespath.compile(response.root).parsed, found)
    return body


def _last_name(ast: Mapping[str, Any]) -> str | None:
    if ast.get("type") == "field":
        return str(ast["value"])
    children = [c for c in ast.get("children", ()) if isinstance(c, Mapping)]
    return _last_name(children[-1]) if children and ast.get("type") == "subexpression" else None


# OpenAPI: an explicit example of the first 2xx JSON answer, else one built from its schema.


def _resolve(doc: Mapping[str, Any], node: Any, depth: int = 0) -> Any:
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str) and depth < 20:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            return {}  # another file's schema: not followed
        target: Any = doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        node, depth = target, depth + 1
    return node


_FORMATS = {
    "date": "2026-01-15",
    "date-time": "2026-01-15T09:30:00Z",
    "email": "user@example.com",
    "uuid": "00000000-0000-4000-8000-000000000001",
    "uri": "https://example.com/",
}


def schema_example(doc: Mapping[str, Any], schema: Any, depth: int = 0) -> Any:
    """A value that fits an OpenAPI/JSON schema: its example, enum, default or a plain value."""
    schema = _resolve(doc, schema)
    if not isinstance(schema, Mapping) or depth > _MAX_SCHEMA_DEPTH:
        return None
    for key in ("example", "default", "const"):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("oneOf", "anyOf"):
        if schema.get(key):
            return schema_example(doc, schema[key][0], depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = schema_example(doc, part, depth + 1)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), None) if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: schema_example(doc, sub, depth + 1) for name, sub in props.items()}
    if kind == "array":
        return [schema_example(doc, schema.get("items", {}), depth + 1)]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.0))
    if kind == "boolean":
        return True
    if kind == "string":
        return _FORMATS.get(str(schema.get("format")), "string")
    return None


def contract_body(expect: Mapping[str, Any], args: Mapping[str, Any]) -> Any:
    """A body that fits a tool's response contract (`response.expect`), echoing the arguments
    wherever a property of the same name takes a value of their type."""
    return _echo(schema_example(expect, expect), args)


def _echo(value: Any, args: Mapping[str, Any]) -> Any:
    if isinstance(value, list):
        return [_echo(item, args) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for name, item in value.items():
        given = args.get(name)
        same_kind = given is not None and type(given) is type(item)
        out[name] = given if same_kind else _echo(item, args)
    return out


def _json_content(doc: Mapping[str, Any], response: Any) -> Mapping[str, Any] | None:
    content = _resolve(doc, response).get("content") if isinstance(response, Mapping) else None
    if not isinstance(content, Mapping):
        return None
    for media, body in content.items():
        if media.split(";")[0].strip().endswith("json") and isinstance(body, Mapping):
            return body
    return None


def _operation_answer(doc: Mapping[str, Any], operation: Mapping[str, Any]) -> Answer | None:
    responses = operation.get("responses") or {}
    codes = sorted(str(c) for c in responses if str(c).startswith("2"))
    if not codes:
        return None
    code = codes[0]
    status = int(code) if code.isdigit() else 200
    media = _json_content(doc, responses[code] if code in responses else responses[int(code)])
    if media is None:
        return Answer(status=status)
    if "example" in media:
        return Answer(status=status, body=media["example"])
    examples = media.get("examples")
    if isinstance(examples, Mapping) and examples:
        first = _resolve(doc, next(iter(examples.values())))
        if isinstance(first, Mapping) and "value" in first:
            return Answer(status=status, body=first["value"])
    return Answer(status=status, body=schema_example(doc, media.get("schema", {})))


def load_openapi_answers(path: str | Path) -> dict[tuple[str, str], Answer]:
    """The answer per (METHOD, path template) an OpenAPI document gives; raises ValueError."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not YAML or JSON: {exc}") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("paths"), Mapping):
        raise ValueError(f"{path} is not an OpenAPI document (it has no `paths`)")
    answers: dict[tuple[str, str], Answer] = {}
    for template, item in doc["paths"].items():
        if not isinstance(item, Mapping):
            continue
        for method, operation in item.items():
            if method.upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                continue
            if isinstance(operation, Mapping):
                answer = _operation_answer(doc, operation)
                if answer is not None:
                    answers[template_key(method, str(template))] = answer
    return answers
