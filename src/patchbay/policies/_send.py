"""The innermost steps: credentials, then the transport, one attempt each."""

from __future__ import annotations

import contextlib
import time

from patchbay._errors import DeadlineExceeded
from patchbay.http._auth import Authenticator
from patchbay.http._types import Request, Response, ResponseTooLarge, Transport, TransportError
from patchbay.observe._events import Event
from patchbay.policies._base import Exchange, Send
from patchbay.policies._deprecation import DeprecationWatch


class AuthPolicy:
    """Add credentials; on a 401, refresh them once and resend."""

    __slots__ = ("_auth",)

    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    async def __call__(self, request: Request, exchange: Exchange, next: Send) -> Response:
        sent = await self._auth.apply(request)
        response = await next(sent, exchange)
        if response.status == 401 and await self._auth.on_unauthorized(sent):
            response = await next(await self._auth.apply(request), exchange)
        return response


class TransportStep:
    """Send one attempt with a timeout that never outlives the budget, and report it."""

    __slots__ = ("_transport", "_watch")

    def __init__(self, transport: Transport, watch: DeprecationWatch | None = None) -> None:
        self._transport = transport
        self._watch = watch  # Deprecation and Sunset headers: one shared per runtime

    async def __call__(self, request: Request, exchange: Exchange) -> Response:
        integration = exchange.integration
        timeout = min(integration.timeout_s, exchange.remaining())
        if timeout <= 0:
            raise DeadlineExceeded("The answer took too long.")
        exchange.attempts += 1
        exchange.sent = True
        span = None
        if exchange.tracing is not None:
            # A client span per attempt; its `traceparent` goes upstream with the request.
            span = exchange.tracing.start_attempt(request, exchange.attempt - 1)
            request = request.with_headers(span.headers)
        started = time.perf_counter()
        status: int | None = None
        outcome = "ok"
        # Why no answer came, for people (logs, `patchbay call` on stderr): method, host and
        # port, path template and the system's reason. The LLM never reads events.
        why: dict[str, str] = {}
        try:
            response = await self._transport.send(request, timeout)
            status = response.status
            outcome = "ok" if status < 400 else f"http_{status}"
            if self._watch is not None:
                with contextlib.suppress(Exception):  # observation never fails a call
                    self._watch.check(request, response, exchange)
            return response
        except TimeoutError as exc:
            outcome = "timeout"
            why = {"error": str(exc) or f"no answer within {timeout:g} s"}
            raise
        except TransportError as exc:
            outcome = "network_error"
            why = {"error": str(exc)}
            raise
        except ResponseTooLarge as exc:
            status, outcome = exc.status_code, "too_large"
            raise
        finally:
            if span is not None and exchange.tracing is not None:
                exchange.tracing.end_attempt(span, status, outcome)
            if exchange.emitter.active:
                exchange.event(
                    Event(
                        kind="attempt",
                        tool=exchange.tool.name,
                        call_id=exchange.call.id,
                        integration=integration.name,
                        tenant=exchange.call.tenant,
                        method=request.method,
                        path=request.path_template,
                        status=status,
                        latency_ms=round((time.perf_counter() - started) * 1000, 3),
                        attempt=exchange.attempt,
                        outcome=outcome,
                        extra=why
                        if exchange.version is None
                        else {**why, "version": exchange.version},
                    )
                )
