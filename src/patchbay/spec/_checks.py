"""Checks across a parsed config that the models alone cannot make; each returns every mistake."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import jmespath
from jmespath.exceptions import (
    ArityError,
    IncompleteExpressionError,
    JMESPathError,
    LexerError,
    ParseError,
)

from patchbay._errors import ConfigError
from patchbay.spec._base import HEADER_NAME
from patchbay.spec._imports import import_callable, load_handler
from patchbay.spec._model import Integration, Param, Prefetch, Tool
from patchbay.spec._ops import GatewayAuth
from patchbay.spec._pattern import compile_pattern
from patchbay.spec._state import StateSpec, check_state_url, durable_url

# The same placeholder grammar as the request builder (http/_build.py), so what passes here
# is exactly what the builder fills.
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_TOOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")  # OpenAI, Anthropic and Gemini rules
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_CALL_FIELDS = ("id", "tenant", "caller")


def check_state(state: object) -> list[ConfigError]:
    """`state` is a store URL, or `{fast: URL, durable: URL}` (shape errors come from the model)."""
    if isinstance(state, str):
        return check_state_url(state, "state")
    if isinstance(state, Mapping):
        return [
            error
            for role in ("fast", "durable")
            if isinstance(state.get(role), str)
            for error in check_state_url(state[role], f"state.{role}")
        ]
    return []


def _http_url(url: str, where: str) -> list[ConfigError]:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.hostname:
        return []
    return [ConfigError(f"expected an absolute http(s) URL, got {url!r}", where)]


def check_integration(integration: Integration, where: str) -> list[ConfigError]:
    """Base URLs (also per tenant) and token URLs must be absolute http(s) URLs."""
    errors = _http_url(integration.base_url, f"{where}.base_url")
    token_url = getattr(integration.auth, "token_url", None)
    if isinstance(token_url, str):
        errors += _http_url(token_url, f"{where}.auth.token_url")
    for tenant, override in integration.tenants.items():
        if override.base_url is not None:
            errors += _http_url(override.base_url, f"{where}.tenants.{tenant}.base_url")
    headers = dict(integration.headers)
    if integration.version is not None and integration.version.header is not None:
        headers[integration.version.header] = integration.version.value or ""
    for name, value in headers.items():
        errors += _header(name, value, f"{where}.headers.{name}")
    # Every version a request may carry in a header: the canary's and the tenants' pins too
    # (the integration's own value is checked with its headers above).
    pin = integration.version
    if pin is not None and pin.header is not None and pin.canary is not None:
        errors += _header(pin.header, pin.canary.value, f"{where}.version.canary.value")
    for tenant, override in integration.tenants.items():
        pin = override.version
        if pin is not None and pin.header is not None:
            both = (pin.value or "") + (pin.canary.value if pin.canary else "")
            errors += _header(pin.header, both, f"{where}.tenants.{tenant}.version")
    for i, operation in enumerate(integration.operations):
        errors += _not_a_url(operation.path, f"{where}.operations[{i}].path", integration.name)
    return errors


# `https://host/...` or `//host/...`: a path that would leave the integration's base URL.
_URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://|//")


def _not_a_url(path: str, where: str, integration: str | None) -> list[ConfigError]:
    """A request path is joined to the integration's base_url: a whole URL here is a mistake."""
    if not _URL_LIKE.match(path):
        return []
    parts = urlsplit(path if "://" in path else f"https:{path}")
    rest = parts.path or "/"
    home = f"integrations.{integration}.base_url" if integration else "the integration's base_url"
    return [
        ConfigError(
            f"is a URL, not a path: write {rest!r} here and put "
            f"'{parts.scheme}://{parts.netloc}' in {home}",
            where,
        )
    ]


# A header value may hold no control character but tab.
_HEADER_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _header(name: str, value: str, where: str) -> list[ConfigError]:
    """A fixed header must be sendable as written: a token name, no control characters."""
    if not HEADER_NAME.fullmatch(name):
        return [ConfigError(f"{name!r} is not a valid header name", where)]
    if _HEADER_CONTROL.search(value):
        return [ConfigError("a header value may not contain control characters", where)]
    return []


def check_gateway_tenants(
    auth: GatewayAuth, integrations: Mapping[str, Integration]
) -> list[ConfigError]:
    """A tenant with gateway credentials must be one some integration serves: else all fail."""
    if not integrations:
        return []
    return [
        ConfigError(
            f"no integration serves tenant {tenant!r}, so each of its tool calls would be "
            "refused: list it under an integration's tenants (an empty entry {} keeps the "
            "integration's own settings) or set that integration's unknown_tenants: default",
            f"gateway.auth.tenants.{tenant}",
        )
        for tenant in auth.tenants
        if not any(
            tenant in i.tenants or i.unknown_tenants == "default" for i in integrations.values()
        )
    ]


def _placeholder_problem(name: str, params: Collection[str], *, in_path: bool) -> str | None:
    """What is wrong with placeholder `{name}`, or None."""
    if not _NAME.fullmatch(name):
        # Outside a path the builder leaves such braces as literal text.
        return f"malformed placeholder {{{name}}}" if in_path else None
    parts = name.split(".")
    if len(parts) == 1:
        if not in_path:
            return f"unknown placeholder {{{name}}}; write {{args.{name}}} or {{call.id}}-style"
        parts = ["args", name]
    root, rest = parts[0], parts[1:]
    if root == "args":
        if len(rest) != 1 or not rest[0]:
            return f"placeholder {{{name}}} must name one parameter, like {{args.x}}"
        if rest[0] not in params:
            known = ", ".join(params) or "none"
            return f"placeholder {{{name}}} names no parameter (parameters: {known})"
        return None
    if root == "call":
        if len(rest) == 1 and rest[0] in _CALL_FIELDS:
            return None
        if len(rest) >= 2 and rest[0] == "state" and all(rest):
            return None
        return (
            f"unknown placeholder {{{name}}}; "
            "use call.id, call.tenant, call.caller or call.state.<name>"
        )
    return f"unknown placeholder root {root!r} in {{{name}}}; use args or call"


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string inside a template value, with its location."""
    if isinstance(value, str):
        yield value, where
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]")


def _template(
    text: str, where: str, params: Collection[str], *, in_path: bool
) -> list[ConfigError]:
    errors = []
    for match in _PLACEHOLDER.finditer(text):
        problem = _placeholder_problem(match.group(1), params, in_path=in_path)
        if problem:
            errors.append(ConfigError(problem, where))
    return errors


def _jmespath(expr: str, where: str) -> list[ConfigError]:
    try:
        jmespath.compile(expr)
    except JMESPathError as exc:
        return [ConfigError(f"invalid JMESPath expression {expr!r}: {_why(exc)}", where)]
    return []


def _why(exc: JMESPathError) -> str:
    """jmespath's error without its multi-line caret drawing."""
    if isinstance(exc, IncompleteExpressionError):
        return "the expression is incomplete"
    if isinstance(exc, LexerError):
        return f"{exc.message} at column {exc.lexer_position}"
    if isinstance(exc, ParseError) and not isinstance(exc, ArityError):
        if exc.token_type == "EOF":
            return f"unexpected end at column {exc.lex_position}"
        return f"unexpected {exc.token_value!r} at column {exc.lex_position}"
    return str(exc).splitlines()[0]


def _param(param: Param, where: str) -> list[ConfigError]:
    errors = []
    if param.pattern is not None:
        try:
            compile_pattern(param.pattern)
        except re.error as exc:
            errors.append(ConfigError(f"invalid regular expression: {exc}", f"{where}.pattern"))
    for low, high in (("minimum", "maximum"), ("min_length", "max_length")):
        lo, hi = getattr(param, low), getattr(param, high)
        if lo is not None and hi is not None and lo > hi:
            errors.append(ConfigError(f"{low} {lo:g} is above {high} {hi:g}", f"{where}.{low}"))
    if param.items is not None:
        errors += _param(param.items, f"{where}.items")
    for name, field in (param.properties or {}).items():
        errors += _param(field, f"{where}.properties.{name}")
    return errors


def check_tool(
    tool: Tool,
    where: str,
    integrations: Collection[str] | None,
    base_dir: str | None,
    *,
    import_handler: bool = True,
) -> list[ConfigError]:
    """Every cross-field mistake of one tool.

    `integrations` None skips the integration check, `base_dir` None the imports.
    """
    errors = [ConfigError(problem, where) for problem in tool.shape_problems()]
    if not _TOOL_NAME.fullmatch(tool.name):
        errors.append(
            ConfigError(
                "tool names are 1 to 64 letters, digits, '_' or '-', starting with a letter or '_'",
                where,
            )
        )
    # An empty integration is a shape problem above (builtin tools need none).
    if integrations is not None and tool.integration and tool.integration not in integrations:
        known = ", ".join(integrations) or "none"
        errors.append(
            ConfigError(
                f"unknown integration {tool.integration!r} (integrations: {known})",
                f"{where}.integration",
            )
        )
    params = list(tool.parameters)
    for name, param in tool.parameters.items():
        if not _PARAM_NAME.fullmatch(name):
            errors.append(
                ConfigError(
                    "parameter names start with a letter or '_' and hold letters, digits, '_'",
                    f"{where}.parameters.{name}",
                )
            )
        errors += _param(param, f"{where}.parameters.{name}")
    if tool.require is not None:
        for kind in ("one_of", "all_of"):
            for name in getattr(tool.require, kind):
                if name not in tool.parameters:
                    errors.append(
                        ConfigError(f"names unknown parameter {name!r}", f"{where}.require.{kind}")
                    )
    request = tool.request
    if request is not None:
        errors += _not_a_url(request.path, f"{where}.request.path", tool.integration)
        errors += _template(request.path, f"{where}.request.path", params, in_path=True)
        for part in ("query", "headers", "body"):
            for text, at in _strings(getattr(request, part), f"{where}.request.{part}"):
                errors += _template(text, at, params, in_path=False)
        for name, value in request.headers.items():
            errors += _header(name, value, f"{where}.request.headers.{name}")
    if tool.idempotency is not None:
        errors += _template(tool.idempotency.key, f"{where}.idempotency.key", params, in_path=False)
        errors += _header(tool.idempotency.header, "", f"{where}.idempotency.header")
    for i, rule in enumerate(tool.rules):
        errors += _jmespath(rule.check, f"{where}.rules[{i}].check")
    response = tool.response
    if response.root is not None:
        errors += _jmespath(response.root, f"{where}.response.root")
    for out, expr in (response.fields or {}).items():
        errors += _jmespath(expr, f"{where}.response.fields.{out}")
    errors += _jmespath(response.code_field, f"{where}.response.code_field")
    if response.summarize is not None and response.summarize.path is not None:
        errors += _jmespath(response.summarize.path, f"{where}.response.summarize.path")
    if tool.cache is not None and tool.is_write:
        errors.append(ConfigError("a write tool cannot be cached", f"{where}.cache"))
    if tool.mode == "background" and not tool.is_write:
        errors.append(ConfigError("only write tools can run in the background", f"{where}.mode"))
    if tool.prefetch and tool.is_write:
        errors.append(
            ConfigError("only read tools can be prefetched at call start", f"{where}.prefetch")
        )
    elif tool.prefetch:
        errors += _prefetch(tool, where)
    if tool.mode == "background" and tool.builtin is not None:
        errors.append(ConfigError("a builtin tool answers at once", f"{where}.mode"))
    elif tool.mode == "background" and _resend_unsafe(tool):
        errors.append(
            ConfigError(
                "a background write may be sent more than once (retries, restarts): "
                "give it an idempotency key",
                f"{where}.mode",
            )
        )
    if base_dir is None:
        return errors
    if import_handler and tool.handler is not None:
        try:
            load_handler(base_dir, tool.handler)
        except ConfigError as exc:
            errors.append(ConfigError(exc.message, f"{where}.handler"))
    for i, ref in enumerate(tool.validators):
        try:
            import_callable(ref, base_dir)
        except ConfigError as exc:
            errors.append(ConfigError(exc.message, f"{where}.validators[{i}]"))
    return errors


def _resend_unsafe(tool: Tool) -> bool:
    request = tool.request
    return request is not None and request.method in ("POST", "PATCH") and not tool.idempotency


def _prefetch(tool: Tool, where: str) -> list[ConfigError]:
    """Prefetch arguments name parameters and come from the call alone (it has no LLM yet)."""
    args = tool.prefetch.args if isinstance(tool.prefetch, Prefetch) else {}
    errors = []
    for name in tool.parameters:
        if name not in args and tool.is_required(name):
            errors.append(
                ConfigError(
                    f"the tool requires {name!r}: fill it from the call in prefetch.args",
                    f"{where}.prefetch",
                )
            )
    for name, value in args.items():
        at = f"{where}.prefetch.args.{name}"
        if name not in tool.parameters:
            errors.append(ConfigError(f"names unknown parameter {name!r}", at))
        for text, loc in _strings(value, at):
            for match in _PLACEHOLDER.finditer(text):
                placeholder = match.group(1)
                if not placeholder.startswith("call."):
                    problem: str | None = (
                        f"prefetch arguments come from the call, not {{{placeholder}}}: use "
                        "call.caller, call.tenant, call.id or call.state.<name>"
                    )
                else:
                    problem = _placeholder_problem(placeholder, (), in_path=False)
                if problem:
                    errors.append(ConfigError(problem, loc))
    return errors


def state_warnings(state: str | StateSpec, tools: Mapping[str, Tool]) -> list[ConfigError]:
    """What works but may lose writes: background tools on a store that dies with the process."""
    if durable_url(state) != "memory":
        return []
    return [
        ConfigError(
            "mode: background on state: memory: a write not yet sent is lost if the process "
            "stops first (patchbay call waits for it); use sqlite:///path or redis://... so "
            "the outbox survives a restart",
            f"tools.{name}.mode",
        )
        for name, tool in tools.items()
        if tool.mode == "background"
    ]
