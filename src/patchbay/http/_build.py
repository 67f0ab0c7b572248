"""Sans-IO request building: a tool's declared request plus arguments and call context.

Nothing here does I/O, so every rule that keeps an LLM's arguments from steering a request
outside its integration (path segments, hosts, header injection) is tested without a loop.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from patchbay._errors import ConfigError, InvalidArguments
from patchbay.http._types import Request
from patchbay.spec._call import CallContext
from patchbay.spec._model import Integration, Tool

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_MISSING = object()


class _Absent(Exception):
    """A placeholder names an optional argument the LLM did not give."""


def _lookup(name: str, args: Mapping[str, Any], call: CallContext) -> Any:
    parts = name.split(".")
    if parts[0] == "args":
        value: Any = args.get(parts[1], _MISSING) if len(parts) == 2 else _MISSING
        if value is _MISSING or value is None:
            raise _Absent(name)
        return value
    if parts[0] == "call":
        scope: Any = call.as_template_scope()
        for part in parts[1:]:
            scope = scope.get(part, _MISSING) if isinstance(scope, Mapping) else _MISSING
            if scope is _MISSING:
                break
        if scope is _MISSING or scope is None:
            if len(parts) > 2 and parts[1] == "state":
                raise InvalidArguments(
                    f"This call does not know {parts[-1]} yet.",
                    fields={parts[-1]: f"unknown in this call so far; find the {parts[-1]} first"},
                )
            raise _Absent(name)
        return scope
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


def _segment(name: str, value: Any) -> str:
    text = _text(value)
    if not text:
        raise InvalidArguments(f"{name} is empty.", fields={name: "must not be empty"})
    # quote(safe="") encodes '/', '?', '#', ':', '%' and control characters; dots are not
    # encoded by quote, so a lone '.' or '..' would still walk the path: encode those too.
    encoded = quote(text, safe="")
    if encoded in (".", ".."):
        encoded = encoded.replace(".", "%2E")
    return encoded


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
    if any(ch in text for ch in "\r\n\x00"):
        raise InvalidArguments(
            f"{name} has line breaks.", fields={name: "must be a single line of text"}
        )
    return text


def _query(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        if isinstance(value, list | tuple):
            out.extend((key, _text(v)) for v in value if v is not None)
        elif value is not None:
            out.append((key, _text(value)))
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
    return Request(
        method=spec.method,
        url=url,
        path_template=spec.path,
        integration=integration.name,
        tool=tool.name,
        headers=headers,
        query=_query(fill(spec.query, args, call)),
        json=body,
        has_body=spec.body is not None,
        idempotency_key=idem,
    )
