"""Outbound proxies: which requests go through one, and how (absolute form, or a CONNECT tunnel).

`ProxiedTransport` wraps the shared transport for one integration: it marks each request with
the proxy it goes through (`Request.proxy`), from the integration's `proxy:` or else from the
proxy variables read when the config was loaded. Both transports honour the mark.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import ssl
from collections.abc import Callable, Mapping
from typing import Final, TypeVar
from urllib.parse import unquote, urlsplit

import msgspec

from patchbay.http._secrets import SecretResolver
from patchbay.http._types import ConnectError, Proxy, Request, Response, Transport
from patchbay.spec._proxy import ProxySpec

__all__ = [
    "ProxiedTransport",
    "TunnelError",
    "absolute_form",
    "bypass",
    "open_tunnel",
    "refused_by_proxy",
]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_MAX_HEAD = 16 * 1024  # a CONNECT answer is a status line and a few headers
_MAX_ROUTES = 256
_P = TypeVar("_P", bound=asyncio.Protocol)
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class TunnelError(Exception):
    """The proxy would not open a tunnel (or was not reachable): nothing reached the API."""


def _basic(username: str, password: str) -> str:
    pair = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _parse_proxy(url: str) -> Proxy:
    """A proxy from an environment value: `http://[user:pass@]host[:port]`, scheme optional."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme.lower() != "http":
        raise ValueError(f"only http:// proxies are supported, not {parts.scheme}://")
    if not parts.hostname:
        raise ValueError("the proxy URL has no host")
    auth = None
    if parts.username is not None:
        auth = _basic(unquote(parts.username), unquote(parts.password or ""))
    return Proxy(parts.hostname, parts.port or 80, auth)


# Hand-written: urllib's proxy_bypass_environment knows no CIDR ranges, IPv6 literals or
# `*.domain`, which NO_PROXY values written for curl or Go commonly hold.
class _NoProxy:
    """NO_PROXY: `*`, hosts and domain suffixes (`.corp`, `*.corp`), `host:port`, IPs, CIDR."""

    __slots__ = ("everything", "names", "nets")

    def __init__(self, value: str) -> None:
        self.everything = False
        self.names: list[tuple[str, int | None]] = []
        self.nets: list[_Net] = []
        for raw in value.replace(",", " ").split():
            entry = raw.strip().lower()
            if entry == "*":
                self.everything = True
                continue
            with contextlib.suppress(ValueError):  # not an address or a network: a host name
                self.nets.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            port: int | None = None
            if entry.startswith("["):  # [v6]:port
                addr, _, rest = entry[1:].partition("]")
                entry = addr
                port = int(rest[1:]) if rest[1:].isdigit() else None
            else:
                name, colon, tail = entry.rpartition(":")
                if colon and tail.isdigit() and ":" not in name:
                    entry, port = name, int(tail)
            entry = entry.removeprefix("*").lstrip(".")
            if entry:
                self.names.append((entry, port))

    def matches(self, host: str, port: int) -> bool:
        if self.everything:
            return True
        host = host.lower().rstrip(".")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None and any(ip in net for net in self.nets):
            return True
        for name, only in self.names:
            if only is not None and only != port:
                continue
            if host == name or host.endswith("." + name):
                return True
        return False


def bypass(url: str, no_proxy: str) -> bool:
    """Whether NO_PROXY (`no_proxy`) says `url` goes direct."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return _NoProxy(no_proxy).matches(host, parts.port or _DEFAULT_PORTS.get(parts.scheme, 80))


class ProxiedTransport:
    """One integration's view of the shared transport: requests carry the proxy they use.

    `setting` is the integration's `proxy:` (a ProxySpec; False goes direct; None defers to
    `env`, the HTTP_PROXY / HTTPS_PROXY / NO_PROXY values read when the config was loaded).
    Credentials come from the secret reference when first needed and are never logged.
    """

    __slots__ = ("_fixed", "_inner", "_lock", "_no_proxy", "_routes", "_secrets", "_setting")

    def __init__(
        self,
        inner: Transport,
        setting: ProxySpec | None,
        env: Mapping[str, str],
        secrets: SecretResolver,
    ) -> None:
        self._inner = inner
        self._setting = setting
        self._secrets = secrets
        self._fixed: Proxy | None = None  # the integration's own proxy, once its secret is read
        self._lock = asyncio.Lock()
        self._no_proxy = _NoProxy(env.get("no", ""))
        self._routes: dict[str, Proxy | str | None] = {}
        if setting is not None:
            if setting.password is not None:
                secrets.check(setting.password)
        else:
            for scheme in ("http", "https"):
                if scheme in env:
                    try:
                        self._routes[scheme] = _parse_proxy(env[scheme])
                    except ValueError as exc:
                        # kept as the reason: each request it would carry fails, nothing sent
                        self._routes[scheme] = f"{scheme.upper()}_PROXY: {exc}"

    @staticmethod
    def wanted(setting: ProxySpec | bool | None, env: Mapping[str, str]) -> bool:
        """Whether an integration with this `proxy:` needs a ProxiedTransport at all."""
        if setting is None:
            return "http" in env or "https" in env
        return setting is not False

    async def _own(self) -> Proxy:
        if self._fixed is None:
            async with self._lock:
                if self._fixed is None:
                    spec = self._setting
                    assert spec is not None
                    proxy = _parse_proxy(spec.url)
                    if spec.username is not None:
                        password = ""
                        if spec.password is not None:
                            password = (await self._secrets.resolve(spec.password)).reveal()
                        proxy = Proxy(proxy.host, proxy.port, _basic(spec.username, password))
                    self._fixed = proxy
        return self._fixed

    def _from_env(self, url: str) -> Proxy | str | None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        key = f"{scheme}://{parts.netloc}"
        routes = self._routes
        if key in routes:
            return routes[key]
        route = routes.get(scheme)
        if route is not None:
            port = parts.port or _DEFAULT_PORTS.get(scheme, 80)
            if self._no_proxy.matches(parts.hostname or "", port):
                route = None
        if len(routes) >= _MAX_ROUTES:
            for stale in [k for k in routes if "://" in k]:
                del routes[stale]
        routes[key] = route
        return route

    async def send(self, request: Request, timeout_s: float) -> Response:
        """Send `request` through the proxy its URL goes through (or directly)."""
        route: Proxy | str | None
        route = await self._own() if self._setting is not None else self._from_env(request.url)
        if isinstance(route, str):
            raise ConnectError(f"{request.method} {request.path_template}: {route}")
        if route is not None:
            request = msgspec.structs.replace(request, proxy=route)
        return await self._inner.send(request, timeout_s)

    async def close(self) -> None:
        """Nothing of its own: the shared transport is closed by its owner."""


def absolute_form(
    request: Request, scheme: str, host_line: str, target: str
) -> tuple[Request, str]:
    """A plain-HTTP request through a proxy: the absolute URL as target, and its credentials."""
    authority = host_line.removeprefix("Host: ").rstrip("\r\n")
    proxy = request.proxy
    if proxy is not None and proxy.authorization is not None:
        request = request.with_headers({"Proxy-Authorization": proxy.authorization})
    return request, f"{scheme}://{authority}{target}"


def refused_by_proxy(request: Request, status: int) -> bool:
    """Whether a plain-HTTP answer is the proxy refusing to forward it (407): nothing sent."""
    return status == 407 and request.proxy is not None


class _Handshake(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT, up to the end of its head."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.head = bytearray()
        self.done: asyncio.Future[bytes] = loop.create_future()

    def data_received(self, data: bytes) -> None:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if not self.done.done():
            if end >= 0:
                self.done.set_result(bytes(self.head[:end]))
            elif len(self.head) > _MAX_HEAD:
                self.done.set_exception(TunnelError("the proxy's answer to CONNECT is too long"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(TunnelError("the proxy closed the connection"))


async def open_tunnel(
    loop: asyncio.AbstractEventLoop,
    proxy: Proxy,
    host: str,
    port: int,
    ctx: ssl.SSLContext,
    factory: Callable[[], _P],
) -> _P:
    """A TLS connection to host:port through a CONNECT tunnel of `proxy`, speaking `factory()`.

    TLS (with the request's client certificate, if any) runs end to end with the API: the
    proxy only relays encrypted bytes. Raises TunnelError or OSError; nothing of the request
    is sent before the tunnel is up.
    """
    transport, handshake = await loop.create_connection(
        lambda: _Handshake(loop), proxy.host, proxy.port
    )
    try:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        auth = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
        transport.write(
            f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{auth}\r\n".encode("ascii")
        )
        head = await handshake.done
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        fields = status_line.split(" ", 2)
        if len(fields) < 2 or not fields[0].startswith("HTTP/1.") or not fields[1].isdigit():
            raise TunnelError("the proxy's answer to CONNECT is not HTTP")
        status = int(fields[1])
        if not 200 <= status < 300:
            reason = fields[2].strip()[:80] if len(fields) > 2 else ""
            raise TunnelError(f"the proxy refused the tunnel: {status} {reason}".rstrip())
        if len(handshake.head) > len(head) + 4:
            raise TunnelError("the proxy sent bytes before the TLS handshake")
        protocol = factory()
        tls = await loop.start_tls(transport, protocol, ctx, server_hostname=host)
        if tls is None:  # only when the loop was closed meanwhile
            raise TunnelError("the tunnel closed during the TLS handshake")
    except BaseException:
        transport.abort()
        raise
    protocol.connection_made(tls)
    return protocol
