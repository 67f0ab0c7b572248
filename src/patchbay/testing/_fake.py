"""A scripted transport and a virtual clock: run a handler in a unit test, with no server and no
sleeps.

    fake = FakeTransport()
    fake.add("GET", "/customers/search", json={"data": {"customer": {...}}})
    fake.add("POST", "/payments", status=500, times=1)  # the first payment fails once
    fake.add("POST", "/payments", status=201, json={"status": "completed"})
    clock = FakeClock()
    async with ToolRuntime(config, transport=fake, sleep=clock.sleep) as runtime:
        result = await runtime.call_tool("create_payment", {...}, "call-1")
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec

from patchbay.http import Request, Response

__all__ = ["FakeClock", "FakeTransport", "UnscriptedRequest"]

Answer = Callable[[Request], Response | Awaitable[Response]]
_PLACEHOLDER = re.compile(r"\{[^{}/]+\}")
_encode = msgspec.json.Encoder().encode


class UnscriptedRequest(AssertionError):
    """A request no rule of a FakeTransport answers: the test did not expect it."""


@dataclass(slots=True)
class _Rule:
    method: str
    path: str
    pattern: re.Pattern[str]
    answer: Answer | None
    response: Response | None
    raises: BaseException | type[BaseException] | None
    remaining: int | None


def _pattern(path: str) -> re.Pattern[str]:
    """`/customers/{id}` as a regex over a request's path: a placeholder is one segment.

    Anchored at the end only, so a base URL with a path of its own (`/v1`) still matches.
    """
    parts = _PLACEHOLDER.split(path)
    return re.compile("[^/]+".join(re.escape(p) for p in parts) + r"\Z")


class FakeTransport:
    """A transport answering from scripted rules and recording every request it is sent.

    Pass it as `ToolRuntime(config, transport=fake)`: every request goes through the real
    pipeline (auth, retries, breaker, transforms), only the network is replaced. Rules are
    consulted in the order added; a rule with `times` answers that many requests, then the next
    matching rule answers. A request no rule answers raises `UnscriptedRequest` (the tool's
    result is then an `internal` error and the request is in `unscripted`).
    """

    def __init__(self) -> None:
        self._rules: list[_Rule] = []
        self.requests: list[Request] = []
        self.unscripted: list[Request] = []
        self.closed = False

    def add(
        self,
        method: str,
        path: str,
        *,
        status: int = 200,
        json: Any = None,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        answer: Answer | None = None,
        raises: BaseException | type[BaseException] | None = None,
        times: int | None = None,
    ) -> None:
        """Answer `method path` with a status and a JSON `json` (or raw `body`), with what
        `answer(request)` returns, or by raising `raises`.

        `path` is the declared template (`/customers/{customer_id}`) or a concrete path. To
        fail as the network does, raise `TimeoutError()` (the attempt timed out),
        `patchbay.http.ConnectError(...)` (nothing was sent) or `patchbay.http.TransportError`
        (the connection broke once the request may have arrived).
        """
        if times is not None and times < 1:
            raise ValueError(f"times must be None or >= 1, got {times}")
        if (
            sum(x is not None for x in (answer, raises)) + (json is not None or body is not None)
            > 1
        ):
            raise ValueError("give one of json/body, answer or raises")
        response = None
        if answer is None and raises is None:
            response = self.response(status, json=json, body=body, headers=headers)
        self._rules.append(
            _Rule(method.upper(), path, _pattern(path), answer, response, raises, times)
        )

    @staticmethod
    def response(
        status: int = 200,
        *,
        json: Any = None,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """An upstream answer, for `answer` callables: JSON `json`, or a raw `body`."""
        all_headers = dict(headers or {})
        if body is None:
            raw = _encode(json) if json is not None else b""
            if json is not None:
                all_headers.setdefault("Content-Type", "application/json")
        else:
            raw = body.encode() if isinstance(body, str) else body
        return Response(status=status, headers=all_headers, body=raw)

    def calls(self, method: str | None = None, path: str | None = None) -> list[Request]:
        """The requests sent so far, optionally only those of one method and path."""
        return [r for r in self.requests if _matches(r, method, path)]

    async def send(self, request: Request, timeout_s: float) -> Response:
        """Answer from the first rule that matches; never waits."""
        self.requests.append(request)
        for rule in self._rules:
            if rule.remaining == 0 or not _rule_matches(rule, request):
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
            if rule.raises is not None:
                raise rule.raises
            if rule.answer is not None:
                produced = rule.answer(request)
                return await produced if inspect.isawaitable(produced) else produced
            assert rule.response is not None  # add() builds one when there is no answer
            return rule.response
        self.unscripted.append(request)
        raise UnscriptedRequest(
            f"FakeTransport has no answer for {request.method} {_path(request)} "
            f"(template {request.path_template}); add one with fake.add()"
        )

    async def close(self) -> None:
        """Nothing to release; recorded so a test can check the runtime closed it."""
        self.closed = True


def _path(request: Request) -> str:
    return urlsplit(request.url).path or "/"


def _rule_matches(rule: _Rule, request: Request) -> bool:
    if rule.method != request.method:
        return False
    return rule.path == request.path_template or rule.pattern.search(_path(request)) is not None


def _matches(request: Request, method: str | None, path: str | None) -> bool:
    if method is not None and request.method != method.upper():
        return False
    if path is None:
        return True
    return path == request.path_template or _pattern(path).search(_path(request)) is not None


class FakeClock:
    """Virtual time for the runtime's waits: `ToolRuntime(config, sleep=clock.sleep)`.

    Backoffs between retries and Retry-After waits return at once and are recorded in `sleeps`;
    `now` is the virtual time they add up to. Budgets and per-attempt timeouts are unaffected.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        """Advance virtual time by `seconds` without waiting (other tasks still get a turn)."""
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        """Move virtual time on, as if that much time had passed."""
        self.now += max(0.0, seconds)
