"""Sans-IO request building: a tool's declared request plus arguments and call context.

Nothing here does I/O, so every rule that keeps an LLM's arguments from steering a request
outside its integration (path segments, hosts, header injection) is tested without a loop.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from patchbay._errors import ClientError, ConfigError, InvalidArguments
from patchbay.http._types import Request
from patchbay.spec._call import CallContext, unlinked_words
from patchbay.spec._model import Integration, Tool

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_MISSING = object()
# Control characters (C0 but tab, DEL, C1): a header holding one may end early or split in two
# at some hop (CR, LF, NUL) or be read differently by the next one (VT, FF, ESC, ...).
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_DOTS = frozenset({".", ".."})
_SEPARATOR = re.compile(r"[/\\]")
_DECODE_ROUNDS = 4  # layers of percent-encoding undone; a value with more is refused
_BROKEN = "must be text without broken characters (it holds a lone surrogate)"


class _Absent(Exception):
    """A placeholder names an optional argument the LLM did not give."""


def _encodes(text: str) -> bool:
    """Whether `text` can be written as UTF-8: a lone surrogate cannot, on the wire or in JSON."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _broken_text(name: str) -> InvalidArguments:
    return InvalidArguments(f"{name} holds broken characters.", fields={name: _BROKEN})


def _sendable(value: Any) -> bool:
    """Whether a call's value can go into a request: UTF-8 text, or JSON any reader takes."""
    if isinstance(value, str):
        return _encodes(value)
    if isinstance(value, bool) or (isinstance(value, int) and value.bit_length() <= 64):
        return True
    try:  # a state value may be anything an answer, a webhook or a handler left there
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, TypeError, RecursionError):  # NaN, huge integers, surrogates, depth
        return False
    return True


def _unsendable_call(name: str, value: Any) -> ClientError:
    # Not the LLM's to fix: whoever started the call gave its id, tenant and caller, and
    # answers or webhooks filled its state. Nothing is sent, so nothing can have changed.
    what = "holds broken characters" if isinstance(value, str) else "is not a value JSON can carry"
    return ClientError(
        f"The call's {name.removeprefix('call.')} {what}, so the request was not made."
    )


def _lookup(name: str, args: Mapping[str, Any], call: CallContext) -> Any:
    parts = name.split(".")
    if parts[0] == "args":
        value: Any = args.get(parts[1], _MISSING) if len(parts) == 2 else _MISSING
        if value is _MISSING or value is None:
            raise _Absent(name)
        # Validation refuses such text; this holds for callers that build without it.
        if isinstance(value, str) and not value.isascii() and not _encodes(value):
            raise _broken_text(parts[1])
        return value
    if parts[0] == "call":
        scope: Any = call.as_template_scope()
        for part in parts[1:]:
            scope = scope.get(part, _MISSING) if isinstance(scope, Mapping) else _MISSING
            if scope is _MISSING:
                break
        if scope is _MISSING or scope is None:
            if len(parts) > 2 and parts[1] == "state":
                if not call.linked:
                    words = unlinked_words(name)
                    raise InvalidArguments(f"{words}.", fields={parts[-1]: words})
                raise InvalidArguments(
                    f"This call does not know {parts[-1]} yet.",
                    fields={parts[-1]: f"unknown in this call so far; find the {parts[-1]} first"},
                )
            raise _Absent(name)
        if (isinstance(scope, str) and scope.isascii()) or _sendable(scope):
            return scope
        raise _unsendable_call(name, scope)
    raise ConfigError(f"unknown placeholder {{{name}}}")


def fill(template: Any, args: Mapping[str, Any], call: CallContext) -> Any:
    """Fill placeholders in a template value; a string that is one placeholder keeps its type.

    Raises _Absent (internal) when a placeholder names an argument that was not given.
    """
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            return _lookup(whole.group(1), args, call)
        return _PLACEHOLDER.sub(lambda m: _text(_lookup(m.group(1), args, call)), template)
    if isinstance(template, Mapping):
        out: dict[str, Any] = {}
        for key, value in template.items():
            try:
                out[key] = fill(value, args, call)
            except _Absent:
                continue
        return out
    if isinstance(template, list | tuple):
        items = []
        for value in template:
            try:
                items.append(fill(value, args, call))
            except _Absent:
                continue
        return items
    return template


def fill_text(template: str, args: Mapping[str, Any], call: CallContext) -> str:
    """Fill a template that must produce text (idempotency keys, header values)."""
    try:
        return _text(fill(template, args, call))
    except _Absent as exc:
        raise InvalidArguments(
            f"{exc.args[0]} is needed.", fields={_field(str(exc.args[0])): "is required"}
        ) from None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _field(placeholder: str) -> str:
    return placeholder.split(".", 1)[1] if "." in placeholder else placeholder


def has_dot_segment(text: str) -> bool:
    """Whether `text` has a '.' or '..' segment, as it is or once percent-decoded.

    Any server or proxy on the way may decode (`%2e`, `%252e`), split on an encoded or back
    slash (`..%2F`, `..\\`) or normalise Unicode (`．．`) before it resolves dot segments:
    each of those readings is checked.
    """
    for _ in range(_DECODE_ROUNDS):
        readings = (text,) if text.isascii() else (text, unicodedata.normalize("NFKC", text))
        for reading in readings:
            if not _DOTS.isdisjoint(_SEPARATOR.split(reading)):
                return True
        decoded = unquote(text)
        if decoded == text:
            return False
        text = decoded
    return True


def _segment(name: str, value: Any) -> str:
    text = _text(value)
    if not text:
        raise InvalidArguments(f"{name} is empty.", fields={name: "must not be empty"})
    if ("." in text or "%" in text or not text.isascii()) and has_dot_segment(text):
        raise InvalidArguments(
            f"{name} cannot be '.' or '..' or hold such a path segment.",
            fields={name: "must not be or hold a '.' or '..' path segment"},
        )
    # quote(safe="") encodes '/', '?', '#', ':', '%' and control characters: one segment
    try:
        return quote(text, safe="")
    except UnicodeEncodeError:  # a handler's value: arguments and call fields are checked
        raise _broken_text(name) from None


def build_path(template: str, args: Mapping[str, Any], call: CallContext) -> str:
    """Fill a path template, each placeholder percent-encoded as exactly one segment."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        key = name if "." in name else f"args.{name}"
        try:
            value = _lookup(key, args, call)
        except _Absent:
            raise InvalidArguments(
                f"{_field(key)} is needed.", fields={_field(key): "is required"}
            ) from None
        return _segment(_field(key), value)

    return _PLACEHOLDER.sub(one, template)


def _header_value(name: str, value: Any) -> str:
    text = _text(value)
    if CONTROL.search(text):
        raise InvalidArguments(
            f"{name} has line breaks or control characters.",
            fields={name: "must be a single line of plain text"},
        )
    if not text.isascii() and not _encodes(text):
        raise _broken_text(name)
    return text


def _query(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        if isinstance(value, list | tuple):
            out.extend((key, _text(v)) for v in value if v is not None)
        elif value is not None:
            out.append((key, _text(value)))
    for key, text in out:  # a handler's params: arguments and call fields are checked
        if not text.isascii() and not _encodes(text):
            raise _broken_text(key)
    return tuple(out)


def join_url(base_url: str, prefix: str | None, path: str) -> str:
    """Join base URL, optional version prefix and a filled path; refuse anything off-base."""
    base = base_url.rstrip("/")
    pre = "/" + prefix.strip("/") if prefix else ""
    if not path.startswith("/"):
        path = "/" + path
    url = f"{base}{pre}{path}"
    scheme, netloc, root = _split_base(base)
    u = urlsplit(url)
    if (u.scheme, u.netloc) != (scheme, netloc) or not u.path.startswith(root):
        raise InvalidArguments("That request would leave the API.", fields={"path": "not allowed"})
    return url


@functools.lru_cache(maxsize=256)
def _split_base(base: str) -> tuple[str, str, str]:
    # A config has a handful of base URLs: split each once, not on every request.
    b = urlsplit(base)
    return b.scheme, b.netloc, b.path


def build_request(
    tool: Tool,
    integration: Integration,
    args: Mapping[str, Any],
    call: CallContext,
) -> Request:
    """Build the declared request of `tool` for validated `args`; pure, no I/O."""
    spec = tool.request
    if spec is None:
        if tool.graphql is not None:
            return _graphql_request(tool, integration, args, call)
        raise ConfigError("tool has a handler, not a declared request", f"tools.{tool.name}")
    path = build_path(spec.path, args, call)
    prefix = integration.version.path_prefix if integration.version else None
    url = join_url(integration.base_url, prefix, path)
    headers = {**integration.headers}
    for key, value in fill(spec.headers, args, call).items():
        headers[key] = _header_value(key, value)
    if integration.version and integration.version.header and integration.version.value:
        headers[integration.version.header] = integration.version.value
    idem = None
    if tool.idempotency is not None:
        idem = fill_text(tool.idempotency.key, args, call)
        headers[tool.idempotency.header] = _header_value(tool.idempotency.header, idem)
    body = fill(spec.body, args, call) if spec.body is not None else None
    form = None
    if spec.body_encoding == "form":
        form, body = _form(body), None
    return Request(
        method=spec.method,
        url=url,
        path_template=spec.path,
        integration=integration.name,
        tool=tool.name,
        headers=headers,
        query=_query(fill(spec.query, args, call)),
        json=body,
        has_body=spec.body is not None and form is None,
        idempotency_key=idem,
        form=form,
        max_response_bytes=integration.max_response_bytes,
    )


def _graphql_request(
    tool: Tool, integration: Integration, args: Mapping[str, Any], call: CallContext
) -> Request:
    """GraphQL over HTTP: POST `{query, operationName, variables}` as JSON to the endpoint."""
    spec = tool.graphql
    assert spec is not None
    prefix = integration.version.path_prefix if integration.version else None
    if spec.path or prefix:
        url = join_url(integration.base_url, prefix, build_path(spec.path, args, call))
    else:
        url = integration.base_url  # the endpoint as configured: join_url would add a '/'
    headers = {**integration.headers}
    if integration.version and integration.version.header and integration.version.value:
        headers[integration.version.header] = integration.version.value
    idem = None
    if tool.idempotency is not None:
        idem = fill_text(tool.idempotency.key, args, call)
        headers[tool.idempotency.header] = _header_value(tool.idempotency.header, idem)
    body = {
        "query": spec.query,
        "operationName": spec.operation,
        "variables": fill(spec.variables, args, call),
    }
    return Request(
        method="POST",
        url=url,
        path_template=f"{spec.path or '/'} {spec.operation}",
        integration=integration.name,
        tool=tool.name,
        headers=headers,
        json=body,
        has_body=True,
        idempotency_key=idem,
        max_response_bytes=integration.max_response_bytes,
        safe=not tool.is_write,  # a query unless `write` says otherwise
    )


def _form(body: Any) -> tuple[tuple[str, str], ...]:
    """A filled body as form fields: nested values as `key[sub]` and `key[0]`, as Stripe-style
    APIs read them; a list of plain values repeats its key."""
    out: list[tuple[str, str]] = []

    def add(key: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, Mapping):
            for sub, item in value.items():
                add(f"{key}[{sub}]", item)
        elif isinstance(value, list | tuple):
            plain = not any(isinstance(v, Mapping | list | tuple) for v in value)
            for i, item in enumerate(value):
                add(key if plain else f"{key}[{i}]", item)
        else:
            out.append((key, _text(value)))

    for key, value in (body or {}).items():
        add(str(key), value)
    for key, text in out:
        if not text.isascii() and not _encodes(text):
            raise _broken_text(key.split("[", 1)[0])
    return tuple(out)
