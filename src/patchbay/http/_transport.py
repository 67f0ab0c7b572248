"""The aiohttp transport: one pooled session per event loop, one attempt per `send`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import ssl
import time
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

import aiohttp

from patchbay.http._body import BodyTooLarge, BodyUnreadable, inflater_for, length_over, too_large
from patchbay.http._build import CONTROL
from patchbay.http._types import ConnectError, Proxy, Request, Response, TransportError

__all__ = ["AiohttpTransport"]

_JSON = "application/json"
_FORM = "application/x-www-form-urlencoded"
_QUERY = re.compile(r"\?[^\s'\"<>]*")  # any query string quoted inside an error message
_MAX_TIMEOUTS = 256


class AiohttpTransport:
    """Sends requests over one shared, lazily created aiohttp session.

    Connections are pooled per host and per TLS context (aiohttp keys its pool on both), so
    integrations with their own client certificate (`Request.tls`) never share a connection
    with anyone else. Redirects are not followed: a redirect off the integration's base URL
    would carry its credentials to another host, so a 3xx comes back as the answer.
    """

    __slots__ = (
        "_keepalive",
        "_limit",
        "_limit_per_host",
        "_loop",
        "_session",
        "_ssl",
        "_timeouts",
    )

    def __init__(
        self,
        *,
        limit: int = 256,
        limit_per_host: int = 0,
        keepalive_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._keepalive = keepalive_s
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        # created inside the running loop: aiohttp binds a session to the loop it starts in,
        # so a transport reused under a new loop (one asyncio.run per CLI command) starts over
        self._loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(
            limit=self._limit,
            limit_per_host=self._limit_per_host,
            keepalive_timeout=self._keepalive,
            ttl_dns_cache=300,
            ssl=self._ssl,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # one tenant's cookies must never ride along on another tenant's request
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            raise_for_status=False,
            # decoded here instead, within the request's max_response_bytes (aiohttp's own
            # decoder inflates a whole chunk however far it goes); so only what that reads
            headers={"Accept-Encoding": "gzip, deflate"},
            auto_decompress=False,
        )
        # aiohttp resends an idempotent request once when a connection drops; that resend
        # would skip patchbay's rate limit, breaker and attempt count, so retries stay ours.
        # (A private switch: aiohttp's own test client turns it off the same way.)
        self._session._retry_connection = False
        return self._session

    def _timeout(self, timeout_s: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(timeout_s)
        if timeout is None:
            if len(self._timeouts) >= _MAX_TIMEOUTS:
                self._timeouts.clear()
            timeout = self._timeouts[timeout_s] = aiohttp.ClientTimeout(total=timeout_s)
        return timeout

    async def send(self, request: Request, timeout_s: float) -> Response:
        """Send `request` and read the whole answer, giving up after `timeout_s` seconds."""
        session = self._session
        if session is None or self._loop is not asyncio.get_running_loop():
            session = self._open()
        headers = request.headers
        for key, value in headers.items():
            if CONTROL.search(key) or CONTROL.search(value):
                # request building refuses these already: this is the last line, nothing sent
                raise ConnectError(
                    f"{_where(request)}: header {key!r} has a forbidden character "
                    "(a control character)"
                )
        data: bytes | str | None = None
        if request.content is not None:
            data = request.content  # sent as it is, with the Content-Type the headers give
        elif request.form is not None:
            data = urlencode(request.form)
            headers = _with_content_type(headers, _FORM)
        elif request.has_body:
            data = json.dumps(request.json, separators=(",", ":")).encode()
            headers = _with_content_type(headers, _JSON)
        proxy = request.proxy
        if proxy is not None and proxy.authorization and request.url.startswith("http:"):
            # aiohttp sends proxy_headers with CONNECT only: plain HTTP carries them itself
            headers = {**headers, "Proxy-Authorization": proxy.authorization}
        started = time.perf_counter()
        try:
            async with session.request(
                request.method,
                request.url,
                params=request.query or None,
                headers=headers,
                data=data,
                timeout=self._timeout(timeout_s),
                ssl=request.tls if request.tls is not None else self._ssl,
                allow_redirects=False,
                proxy=None if proxy is None else f"http://{proxy.where}",
                proxy_headers=_proxy_headers(proxy),
            ) as resp:
                status = resp.status
                answer_headers = {k.lower(): v for k, v in resp.headers.items()}
                try:
                    body = await _read(resp, request, answer_headers)
                except BaseException:
                    resp.close()  # never back to the pool with the rest of the body unread
                    raise
        except BodyTooLarge:
            raise too_large(request, status) from None
        except BodyUnreadable as exc:
            raise TransportError(f"{_where(request)}: {exc}") from None
        except TimeoutError:
            # aiohttp's connect/read timeouts are also ClientConnectionErrors: check this first
            raise TimeoutError(f"{_where(request)}: no answer within {timeout_s:g} s") from None
        except (aiohttp.ClientConnectorError, aiohttp.ClientHttpProxyError) as exc:
            # no connection was made, or the proxy refused the tunnel: nothing was sent
            raise ConnectError(f"{_where(request)}: {_reason(exc)}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(f"{_where(request)}: {_reason(exc)}") from None
        if status == 407 and proxy is not None:
            raise ConnectError(f"{_where(request)}: the proxy refused it: 407 (credentials)")
        elapsed = (time.perf_counter() - started) * 1000.0
        return Response(status, answer_headers, body, elapsed)

    async def close(self) -> None:
        """Close the session and its pooled connections."""
        session, self._session = self._session, None
        # a session of a loop that has gone cannot be closed from this one; it is dropped
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()
            # lets the connector finish closing transports before the loop goes away
            await asyncio.sleep(0)


async def _read(
    resp: aiohttp.ClientResponse, request: Request, headers: Mapping[str, str]
) -> bytes:
    """The body, decoded, of at most `request.max_response_bytes`; raises BodyTooLarge."""
    limit = request.max_response_bytes
    if request.method == "HEAD":
        return await resp.read()
    length = headers.get("content-length")
    if length_over(length, limit, resp.status):
        raise BodyTooLarge  # refused before a byte of it is read
    inflater = inflater_for(headers.get("content-encoding"), limit)
    if inflater is None:
        if length is not None:
            return await resp.read()  # the parser stops at the length, which fits
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)
    async for chunk in resp.content.iter_any():
        inflater.feed(chunk)
    inflater.finish()
    return b"".join(inflater.chunks)


def _proxy_headers(proxy: Proxy | None) -> dict[str, str] | None:
    if proxy is None or proxy.authorization is None:
        return None
    return {"Proxy-Authorization": proxy.authorization}


def _with_content_type(headers: Mapping[str, str], value: str) -> dict[str, str]:
    out = dict(headers)
    if not any(key.lower() == "content-type" for key in out):
        out["Content-Type"] = value
    return out


def _where(request: Request) -> str:
    """Method, host and path template: never the query (api keys) or filled path (PII)."""
    host = urlsplit(request.url).netloc.rpartition("@")[2]
    return f"{request.method} {host}{request.path_template}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientResponseError):
        text = f"{type(exc).__name__} {exc.status} {exc.message}"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        text = "the server closed the connection"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        # The system's reason in its own words first ("Connection refused"), the detail after.
        if isinstance(exc, socket.gaierror) and exc.strerror:
            text = f"cannot resolve the host: {exc.strerror} ({text})"
        elif isinstance(exc, OSError) and exc.errno and exc.errno > 0:
            text = f"{os.strerror(exc.errno)} ({text})"
    return _QUERY.sub("?…", text)
