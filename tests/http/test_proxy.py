"""Outbound proxies through a real tinyproxy: absolute form for HTTP, CONNECT (mTLS) for HTTPS.

Every test proves the route: the upstream sees tinyproxy's `Via` header, tinyproxy's own log
names the request or tunnel, or the request fails once the proxy is stopped.
"""

from __future__ import annotations

import base64
import logging
import socket
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from pydantic import ValidationError

from patchbay import ToolCall, ToolRuntime
from patchbay.http._auth import build_authenticator
from patchbay.http._proxy import ProxiedTransport, bypass
from patchbay.http._secrets import SecretResolver
from patchbay.http._types import (
    ConnectError,
    Proxy,
    Request,
    Response,
    Transport,
    TransportError,
)
from patchbay.observe import MemorySink
from patchbay.spec import Integration, load_config_text
from patchbay.spec._auth import MtlsAuth
from patchbay.spec._call import CallContext
from patchbay.spec._proxy import ProxySpec, proxy_env

Serve = Callable[..., Awaitable[str]]
USER, PASSWORD = "agent", "s3cret-proxy-pass"


@dataclass
class Tinyproxy:
    port: int
    log: Path
    process: subprocess.Popen[bytes]
    stopped: bool = field(default=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def proxy(self, *, auth: bool = False) -> Proxy:
        header = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return Proxy("127.0.0.1", self.port, header if auth else None)

    def saw(self, text: str) -> bool:
        """Whether tinyproxy logged `text` (it writes a line as it handles each request)."""
        for _ in range(100):
            if self.log.exists() and text in self.log.read_text(errors="replace"):
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.process.terminate()
            self.process.wait(10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def tinyproxy(
    require_binary: Callable[..., str], tmp_path: Path
) -> Iterator[Callable[..., Tinyproxy]]:
    """Start tinyproxy in the foreground on a free port: `start(auth=, connect_ports=)`."""
    binary = require_binary("tinyproxy", package="tinyproxy")
    started: list[Tinyproxy] = []

    def start(*, auth: bool = False, connect_ports: tuple[int, ...] = ()) -> Tinyproxy:
        port = _free_port()
        log = tmp_path / f"tinyproxy-{port}.log"
        lines = [
            f"Port {port}",
            "Listen 127.0.0.1",
            "Timeout 30",
            f'LogFile "{log}"',
            "LogLevel Connect",
            "MaxClients 50",
            "Allow 127.0.0.1",
            *[f"ConnectPort {p}" for p in connect_ports],
            *([f"BasicAuth {USER} {PASSWORD}"] if auth else []),
        ]
        conf = tmp_path / f"tinyproxy-{port}.conf"
        conf.write_text("\n".join(lines) + "\n")
        process = subprocess.Popen(
            [binary, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        proxy = Tinyproxy(port, log, process)
        started.append(proxy)
        for _ in range(500):
            if process.poll() is not None:
                pytest.fail(f"tinyproxy exited with {process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return proxy
            except OSError:
                time.sleep(0.01)
        pytest.fail("tinyproxy did not start listening")

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def plain_url(serve: Serve) -> str:
    """An HTTP API that echoes what reached it: the path, the Via header, the body."""

    async def echo(req: web.Request) -> web.Response:
        return web.json_response(
            {
                "path": req.path_qs,
                "via": req.headers.get("Via"),
                "proxy_auth": req.headers.get("Proxy-Authorization"),
                "body": (await req.text()) or None,
            }
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return await serve(app)


@pytest.fixture
async def tls_url(serve: Serve, ca: trustme.CA) -> str:
    """An HTTPS API that requires a client certificate from `ca`; it answers the client's CN."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED

    async def whoami(req: web.Request) -> web.Response:
        peer = req.transport.get_extra_info("peercert") if req.transport else None
        subject = dict(pair[0] for pair in peer["subject"]) if peer else {}
        return web.json_response(
            {"client": subject.get("commonName"), "via": req.headers.get("Via")}
        )

    app = web.Application()
    app.router.add_route("*", "/whoami", whoami)
    return await serve(app, tls=context)


@pytest.fixture
def client_env(ca: trustme.CA, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client certificate, key and CA as secrets in the environment, and the proxy password."""
    client = ca.issue_cert("agent.example", common_name="voice-agent")
    monkeypatch.setenv("PB_CERT", client.cert_chain_pems[0].bytes().decode())
    monkeypatch.setenv("PB_KEY", client.private_key_pem.bytes().decode())
    monkeypatch.setenv("PB_CA", ca.cert_pem.bytes().decode())
    monkeypatch.setenv("PB_PROXY_PASSWORD", PASSWORD)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _request(url: str, path: str = "/whoami", proxy: Proxy | None = None) -> Request:
    return Request("GET", url + path, path_template=path, integration="it", tool="t", proxy=proxy)


# --- both transports, a request naming its proxy -------------------------------------------


async def test_plain_http_goes_through_the_proxy_in_absolute_form(
    transport: Transport, tinyproxy: Callable[..., Tinyproxy], plain_url: str
) -> None:
    proxy = tinyproxy()
    response = await transport.send(_request(plain_url, "/echo?q=1", proxy=proxy.proxy()), 5.0)
    assert response.status == 200
    answer = response.json()
    assert "tinyproxy" in (answer["via"] or "")
    assert answer["path"] == "/echo?q=1"
    assert proxy.saw(f"GET {plain_url}/echo?q=1 HTTP/1.1")


async def test_https_tunnels_through_connect_with_mtls_end_to_end(
    transport: Transport,
    tinyproxy: Callable[..., Tinyproxy],
    tls_url: str,
    client_env: None,
) -> None:
    proxy = tinyproxy(connect_ports=(_port(tls_url),))
    spec = MtlsAuth(type="mtls", cert="env:PB_CERT", key="env:PB_KEY", ca="env:PB_CA")
    auth = build_authenticator(spec, SecretResolver(), transport)
    sent = await auth.apply(_request(tls_url, proxy=proxy.proxy()))
    response = await transport.send(sent, 5.0)
    assert response.status == 200
    # the API read the client certificate itself: TLS ran end to end, the proxy only relayed
    assert response.json() == {"client": "voice-agent", "via": None}
    assert proxy.saw(f"CONNECT 127.0.0.1:{_port(tls_url)} HTTP/1.1")


async def test_a_proxy_wanting_credentials_refuses_cleanly_and_accepts_them(
    transport: Transport,
    tinyproxy: Callable[..., Tinyproxy],
    plain_url: str,
    tls_url: str,
    client_env: None,
) -> None:
    proxy = tinyproxy(auth=True, connect_ports=(_port(tls_url),))
    with pytest.raises(ConnectError, match="407") as plain:
        await transport.send(_request(plain_url, "/echo", proxy=proxy.proxy()), 5.0)
    spec = MtlsAuth(type="mtls", cert="env:PB_CERT", key="env:PB_KEY", ca="env:PB_CA")
    auth = build_authenticator(spec, SecretResolver(), transport)
    with pytest.raises(ConnectError, match="407") as tunnel:
        await transport.send(await auth.apply(_request(tls_url, proxy=proxy.proxy())), 5.0)
    for exc in (plain.value, tunnel.value):
        assert PASSWORD not in str(exc)

    answer = (
        await transport.send(_request(plain_url, "/echo", proxy=proxy.proxy(auth=True)), 5.0)
    ).json()
    assert "tinyproxy" in answer["via"]
    assert answer["proxy_auth"] is None  # the proxy's credentials stop at the proxy
    sent = await auth.apply(_request(tls_url, proxy=proxy.proxy(auth=True)))
    assert (await transport.send(sent, 5.0)).json()["client"] == "voice-agent"


async def test_a_tunnel_to_a_port_the_proxy_forbids_is_a_connect_error(
    transport: Transport, tinyproxy: Callable[..., Tinyproxy], tls_url: str, client_env: None
) -> None:
    proxy = tinyproxy(connect_ports=(_port(tls_url) + 1,))
    spec = MtlsAuth(type="mtls", cert="env:PB_CERT", key="env:PB_KEY", ca="env:PB_CA")
    auth = build_authenticator(spec, SecretResolver(), transport)
    with pytest.raises(ConnectError, match="403"):
        await transport.send(await auth.apply(_request(tls_url, proxy=proxy.proxy())), 5.0)


async def test_a_stopped_proxy_is_a_connect_error_naming_it(
    transport: Transport, tinyproxy: Callable[..., Tinyproxy], plain_url: str
) -> None:
    proxy = tinyproxy()
    assert (
        await transport.send(_request(plain_url, "/echo", proxy=proxy.proxy()), 5.0)
    ).status == 200
    proxy.stop()
    # aiohttp may first try the keep-alive connection the proxy closed on its way out
    with pytest.raises(TransportError):
        await transport.send(_request(plain_url, "/again", proxy=proxy.proxy()), 5.0)
    with pytest.raises(ConnectError) as caught:
        await transport.send(_request(plain_url, "/again", proxy=proxy.proxy()), 5.0)
    assert f"127.0.0.1:{proxy.port}" in str(caught.value)  # the proxy's address, to look at


# --- through ToolRuntime: the integration's proxy:, the environment, NO_PROXY ---------------

TLS_CONFIG = """
version: 1
integrations:
  billing:
    base_url: {base}
    auth: {{type: mtls, cert: env:PB_CERT, key: env:PB_KEY, ca: env:PB_CA}}
    retry: {{attempts: 2, backoff_s: 0}}
    proxy: {{url: {proxy}, username: {user}, password: env:PB_PROXY_PASSWORD}}
tools:
  whoami:
    integration: billing
    description: Who the API thinks we are.
    request: {{method: GET, path: /whoami}}
  pay:
    integration: billing
    description: A write.
    request: {{method: POST, path: /whoami, body: {{amount: 1}}}}
"""


async def test_an_integration_proxy_with_a_password_by_reference(
    transport_class: type[Transport],
    tinyproxy: Callable[..., Tinyproxy],
    tls_url: str,
    client_env: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = tinyproxy(auth=True, connect_ports=(_port(tls_url),))
    config = load_config_text(TLS_CONFIG.format(base=tls_url, proxy=proxy.url, user=USER), env={})
    sink = MemorySink()
    runtime = ToolRuntime(config, transport=transport_class(), sinks=[sink])
    try:
        result = await runtime.execute(ToolCall("whoami", {}, CallContext(id="c-1")))
        assert result.ok, result
        assert result.result == {"client": "voice-agent", "via": None}
        assert proxy.saw(f"CONNECT 127.0.0.1:{_port(tls_url)}")
    finally:
        await runtime.close()
    proxy.stop()
    # a new runtime: no connection kept alive from before (aiohttp would try that one first)
    runtime = ToolRuntime(config, transport=transport_class(), sinks=[sink])
    try:
        down = await runtime.execute(ToolCall("pay", {}, CallContext(id="c-2")))
    finally:
        await runtime.close()
    # the proxy gone: nothing reached the API, so the write failed (not `pending`)
    assert down.ok is False
    assert down.error is not None and down.error.code == "upstream_unavailable"
    seen = caplog.text + repr(sink.events) + repr(result) + repr(down)
    assert PASSWORD not in seen


async def test_a_wrong_proxy_password_is_upstream_unavailable(
    tinyproxy: Callable[..., Tinyproxy],
    tls_url: str,
    client_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PB_PROXY_PASSWORD", "not-it")
    proxy = tinyproxy(auth=True, connect_ports=(_port(tls_url),))
    config = load_config_text(TLS_CONFIG.format(base=tls_url, proxy=proxy.url, user=USER), env={})
    runtime = ToolRuntime(config, sinks=[])
    try:
        result = await runtime.execute(ToolCall("pay", {}, CallContext(id="c-1")))
    finally:
        await runtime.close()
    assert result.error is not None and result.error.code == "upstream_unavailable"
    assert "not-it" not in repr(result)


ENV_CONFIG = """
version: 1
integrations:
  api:
    base_url: {base}
    retry: {{attempts: 1}}
  direct:
    base_url: {base}
    retry: {{attempts: 1}}
    proxy: none
tools:
  via_env:
    integration: api
    description: Echo.
    request: {{method: GET, path: /echo}}
  via_none:
    integration: direct
    description: Echo.
    request: {{method: GET, path: /echo}}
"""


async def _via(config_text: str, env: dict[str, str], tool: str) -> str | None:
    runtime = ToolRuntime(load_config_text(config_text, env=env), sinks=[])
    try:
        result = await runtime.execute(ToolCall(tool, {}, CallContext(id="c-1")))
    finally:
        await runtime.close()
    assert result.ok, result
    via: str | None = result.result["via"]
    return via


async def test_environment_proxies_and_no_proxy(
    tinyproxy: Callable[..., Tinyproxy], plain_url: str
) -> None:
    proxy = tinyproxy()
    text = ENV_CONFIG.format(base=plain_url)
    # lowercase wins over uppercase, as in curl: the uppercase one points nowhere
    env = {"http_proxy": proxy.url, "HTTP_PROXY": "http://127.0.0.1:9"}
    assert "tinyproxy" in (await _via(text, env, "via_env") or "")
    assert await _via(text, env, "via_none") is None  # proxy: none goes direct
    assert await _via(text, {**env, "NO_PROXY": "example.com, 127.0.0.0/8"}, "via_env") is None
    assert await _via(text, {**env, "no_proxy": f"127.0.0.1:{_port(plain_url)}"}, "via_env") is None
    # another port of the same host is not bypassed
    other = f"127.0.0.1:{_port(plain_url) + 1}"
    assert "tinyproxy" in (await _via(text, {**env, "no_proxy": other}, "via_env") or "")
    # HTTPS_PROXY is for https:// APIs only
    assert await _via(text, {"HTTPS_PROXY": proxy.url}, "via_env") is None


# --- pure: NO_PROXY matching, the spec, reading the environment ----------------------------


@pytest.mark.parametrize(
    ("url", "no_proxy", "direct"),
    [
        ("https://api.example.com/x", "*", True),
        ("https://api.example.com/x", "example.com", True),
        ("https://api.example.com/x", ".example.com", True),
        ("https://api.example.com/x", "*.example.com", True),
        ("https://example.com/x", "example.com", True),
        ("https://badexample.com/x", "example.com", False),
        ("https://api.example.com/x", "other.org, example.com", True),
        ("https://api.example.com/x", "api.example.com:8443", False),
        ("https://api.example.com:8443/x", "api.example.com:8443", True),
        ("http://10.1.2.3/x", "10.0.0.0/8", True),
        ("http://11.1.2.3/x", "10.0.0.0/8", False),
        ("http://192.168.1.5:8080/x", "192.168.1.5", True),
        ("http://[::1]:8080/x", "::1", True),
        ("http://[::1]:8080/x", "[::1]:8080", True),
        ("http://[fd00::5]/x", "fd00::/8", True),
        ("https://API.Example.COM/x", "example.com", True),
        ("https://api.example.com/x", "", False),
    ],
)
def test_no_proxy_matching(url: str, no_proxy: str, direct: bool) -> None:
    assert bypass(url, no_proxy) is direct


def test_the_proxy_setting_and_its_mistakes() -> None:
    base = {"name": "api", "base_url": "https://api.example.com"}
    assert Integration.model_validate({**base, "proxy": "http://proxy:3128"}).proxy == ProxySpec(
        url="http://proxy:3128"
    )
    assert Integration.model_validate({**base, "proxy": "none"}).proxy is False
    assert Integration.model_validate({**base, "proxy": False}).proxy is False
    assert Integration.model_validate(base).proxy is None
    assert Integration.model_validate({**base, "proxy": ""}).proxy is None  # ${VAR:-} unset
    with pytest.raises(ValidationError, match="not a number"):
        Integration.model_validate({**base, "proxy": "http://proxy:port"})
    mistakes = {
        "http://user:pw@proxy:3128": "must not hold credentials",
        "https://proxy:3128": "must start with http://",
        "http://proxy:3128/path": "only scheme, host and port",
    }
    for url, words in mistakes.items():
        with pytest.raises(ValidationError, match=words):
            Integration.model_validate({**base, "proxy": url})
    with pytest.raises(ValidationError, match="secret reference"):
        Integration.model_validate(
            {**base, "proxy": {"url": "http://p:1", "username": "u", "password": "plain"}}
        )
    with pytest.raises(ValidationError, match="needs a username"):
        Integration.model_validate({**base, "proxy": {"url": "http://p:1", "password": "env:X"}})


def test_the_environment_is_read_with_the_config() -> None:
    env = {"HTTPS_PROXY": "http://a:1", "https_proxy": "http://b:2", "NO_PROXY": "x", "OTHER": "y"}
    assert proxy_env(env) == {"https": "http://b:2", "no": "x"}
    # under CGI, HTTP_PROXY may come from a request's Proxy: header
    assert proxy_env({"HTTP_PROXY": "http://evil:1", "REQUEST_METHOD": "GET"}) == {}
    config = load_config_text("version: 1\n", env=env)
    assert config.proxy_env == {"https": "http://b:2", "no": "x"}
    assert "proxy_env" not in config.model_dump()


async def test_an_unsupported_environment_proxy_fails_requests_clearly() -> None:
    class Never:
        async def send(self, request: Request, timeout_s: float) -> Response:
            raise AssertionError("nothing may be sent")

        async def close(self) -> None:
            return None

    env = {"https": "socks5://p:1080"}
    routed = ProxiedTransport(Never(), None, env, SecretResolver())
    with pytest.raises(ConnectError, match="only http:// proxies"):
        await routed.send(_request("https://api.example.com"), 1.0)
