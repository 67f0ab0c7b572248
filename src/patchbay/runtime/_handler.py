"""What a Python handler gets: the call, and a client limited to its integration's operations."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from patchbay._errors import InvalidArguments, OperationNotAllowed
from patchbay.http._build import _header_value, _query, _segment, has_dot_segment, join_url
from patchbay.http._types import Request, Response
from patchbay.policies._base import Exchange
from patchbay.runtime._bodies import Answer, extra_headers, read_answer
from patchbay.spec._call import CallContext
from patchbay.spec._model import Integration, Method

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class Operation:
    """A declared method and path template, with a matcher for concrete paths."""

    method: str
    template: str
    pattern: re.Pattern[str]

    @classmethod
    def of(cls, method: str, template: str) -> Operation:
        """Compile a template such as /customers/{id} into a one-segment-per-placeholder regex."""
        parts = _PLACEHOLDER.split(template)
        regex = "".join(re.escape(p) if i % 2 == 0 else r"[^/?#]+" for i, p in enumerate(parts))
        return cls(method.upper(), template, re.compile(regex))


class HandlerClient:
    """An HTTP client for one integration that can only call the operations the config declares.

    Every request goes through the same pipeline as a declarative tool (auth, retries,
    breaker, rate limit, events), and error statuses become the same ToolErrors.
    """

    __slots__ = ("_allowed", "_exchange", "_headers", "_prefix", "_raise", "_send")

    def __init__(
        self,
        allowed: tuple[Operation, ...],
        exchange: Exchange,
        send: Callable[[Request, Exchange], Awaitable[Response]],
        raise_for: Callable[[Response, Exchange], Any],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._allowed = allowed
        self._exchange = exchange
        self._send = send
        self._raise = raise_for
        pin = exchange.integration.version
        self._prefix = pin.path_prefix if pin else None
        # Shared by every request of the integration and never changed in place.
        self._headers = headers if headers is not None else base_headers(exchange.integration)

    def _param(self, name: str, values: Mapping[str, Any]) -> str:
        if name not in values:
            raise OperationNotAllowed(
                f"The handler gave no path_params value for {{{name}}}.",
                tool=self._exchange.tool.name,
            )
        return _segment(name, values[name])

    def _checked(self, method: str, path: str) -> str:
        """A concrete path that may be matched against the declared templates, or a refusal."""
        if "?" in path or "#" in path or "\\" in path:
            # the path is never echoed: it may hold the caller's details
            raise OperationNotAllowed(
                f"A {method} path from the handler holds '?', '#' or a backslash: pass the "
                "query as params=, and values as path_params= or encoded segments.",
                tool=self._exchange.tool.name,
            )
        if ("." in path or "%" in path or not path.isascii()) and has_dot_segment(path):
            raise InvalidArguments(
                "A value in the request path is '.' or '..' (or encodes one).",
                fields={"path": "must not hold a '.' or '..' path segment"},
            )
        return path

    def _match(self, method: str, path: str) -> Operation:
        for op in self._allowed:
            if op.method == method and (op.template == path or op.pattern.fullmatch(path)):
                return op
        raise OperationNotAllowed(
            f"{method} {path} is not an operation this integration declares.",
            tool=self._exchange.tool.name,
        )

    async def request(
        self,
        method: Method,
        path: str,
        *,
        path_params: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: str | bytes | None = None,
        form: Mapping[str, Any] | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        answer: Answer = "json",
        safe: bool = False,
    ) -> Any:
        """Send a declared operation and return its body; error statuses raise ToolErrors.

        `path` is a declared template (`/customers/{id}` with `path_params`) or a concrete
        path matching one; placeholders are encoded as single segments either way.

        The body is one of `json`, `content` (text or bytes, sent as it is: XML, SOAP, CSV)
        or `form` (urlencoded); `content_type` sets its Content-Type, `headers` adds headers
        (a SOAPAction, an Accept). `answer` reads a 2xx body as "json" (the default), "text"
        (decoded by its charset) or "bytes". Retries, breaker, budget and the integration's
        `max_response_bytes` apply whatever the body. `safe=True` marks a POST that changes
        nothing (a SOAP or GraphQL query): it is retried and timed out as a read.
        """
        if answer != "json" and answer not in ("text", "bytes"):
            raise ValueError(f'answer= is "json", "text" or "bytes", not {answer!r}')
        if path_params:
            path = _PLACEHOLDER.sub(lambda m: self._param(m.group(1), path_params), path)
        op = self._match(method, self._checked(method, path))
        integration = self._exchange.integration
        tool = self._exchange.tool
        sent = self._headers
        if headers or content_type is not None or content is not None or form is not None:
            extra = extra_headers(headers, content_type, json, content, form)
            if "Content-Type" in extra:  # the body's own type replaces the integration's
                sent = {k: v for k, v in sent.items() if k.lower() != "content-type"}
            sent = {**sent, **extra}
        if idempotency_key is not None:
            header = tool.idempotency.header if tool.idempotency else "Idempotency-Key"
            sent = {**sent, header: _header_value(header, idempotency_key)}
        request = Request(
            method=method,
            url=join_url(integration.base_url, self._prefix, path),
            path_template=op.template,
            integration=integration.name,
            tool=tool.name,
            headers=sent,
            query=_query(params) if params else (),
            json=json,
            has_body=json is not None,
            idempotency_key=idempotency_key,
            form=_query(form) if form is not None else None,
            max_response_bytes=integration.max_response_bytes,
            content=content.encode() if isinstance(content, str) else content,
            safe=safe,
        )
        response = await self._send(request, self._exchange)
        if answer == "json" or response.status >= 300:
            return self._raise(response, self._exchange)  # error statuses raise here
        return read_answer(response, answer)

    # Plain functions handing back request()'s coroutine: one frame less on every await.
    def get(self, path: str, **kw: Any) -> Awaitable[Any]:
        """GET a declared operation (await it)."""
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Awaitable[Any]:
        """POST to a declared operation (await it)."""
        return self.request("POST", path, **kw)


def base_headers(integration: Integration) -> dict[str, str]:
    """The headers every request of an integration carries: its own and its version pin."""
    headers = dict(integration.headers)
    pin = integration.version
    if pin and pin.header and pin.value:
        headers[pin.header] = pin.value
    return headers


@dataclass(slots=True)
class HandlerContext:
    """The first argument of every Python handler."""

    call: CallContext
    client: HandlerClient
    tool: str

    @property
    def state(self) -> dict[str, Any]:
        """The call's state, shared with later tool calls (`{call.state.x}` in templates)."""
        return self.call.state
