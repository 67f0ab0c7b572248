"""mTLS against a loopback HTTPS server that requires a client certificate from its own CA."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from patchbay.http._auth import build_authenticator
from patchbay.http._secrets import SecretResolver
from patchbay.http._types import Request, Transport, TransportError
from patchbay.spec._auth import MtlsAuth

Serve = Callable[..., Awaitable[str]]


@dataclass(frozen=True)
class Pem:
    cert: str
    key: str


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(cn: str, issuer: Pem | None, *, ca: bool = False, server: bool = False) -> Pem:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    if issuer is None:
        signer, issuer_name = key, _name(cn)
    else:
        signer = serialization.load_pem_private_key(issuer.key.encode(), None)  # type: ignore[assignment]
        issuer_name = x509.load_pem_x509_certificate(issuer.cert.encode()).subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    elif server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    cert = builder.sign(signer, hashes.SHA256())
    return Pem(
        cert.public_bytes(serialization.Encoding.PEM).decode(),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )


@dataclass(frozen=True)
class Pki:
    ca: Pem
    server: Pem
    client: Pem
    stranger: Pem  # a client certificate from a CA the server does not trust


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = _issue("patchbay test CA", None, ca=True)
    other_ca = _issue("someone else's CA", None, ca=True)
    return Pki(
        ca=ca,
        server=_issue("localhost", ca, server=True),
        client=_issue("voice-agent", ca),
        stranger=_issue("voice-agent", other_ca),
    )


@pytest.fixture
async def mtls_url(serve: Serve, pki: Pki, tmp_path: Path) -> str:
    (tmp_path / "server.pem").write_text(pki.server.cert)
    (tmp_path / "server.key").write_text(pki.server.key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=pki.ca.cert)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED

    async def whoami(req: web.Request) -> web.Response:
        peer = req.transport.get_extra_info("peercert") if req.transport else None
        subject = dict(pair[0] for pair in peer["subject"]) if peer else {}
        return web.json_response({"client": subject.get("commonName")})

    app = web.Application()
    app.router.add_get("/whoami", whoami)
    return await serve(app, tls=context)


def whoami(url: str) -> Request:
    return Request(
        method="GET", url=f"{url}/whoami", path_template="/whoami", integration="it", tool="t"
    )


@pytest.fixture
def secrets(pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SecretResolver:
    """Certificate by file path, key and CA as PEM content in the environment."""
    (tmp_path / "client.pem").write_text(pki.client.cert + "\n")
    monkeypatch.setenv("PB_CLIENT_KEY", pki.client.key)
    monkeypatch.setenv("PB_CA", pki.ca.cert)
    monkeypatch.setenv("PB_STRANGER_CERT", pki.stranger.cert)
    monkeypatch.setenv("PB_STRANGER_KEY", pki.stranger.key)
    return SecretResolver(base_dir=tmp_path)


def _leftover_tls_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("patchbay-tls-*"))


async def test_the_client_certificate_opens_the_door(
    transport: Transport, mtls_url: str, secrets: SecretResolver
) -> None:
    before = _leftover_tls_dirs()
    spec = MtlsAuth(type="mtls", cert="file:client.pem", key="env:PB_CLIENT_KEY", ca="env:PB_CA")
    auth = build_authenticator(spec, secrets, transport)
    sent = await auth.apply(whoami(mtls_url))
    assert sent.tls is not None
    response = await transport.send(sent, 5.0)
    assert response.status == 200
    assert response.json() == {"client": "voice-agent"}
    assert _leftover_tls_dirs() <= before  # the key was never left on disk
    again = await auth.apply(whoami(mtls_url))
    assert again.tls is sent.tls
    assert await auth.on_unauthorized(sent) is False


async def test_without_a_client_certificate_the_server_refuses(
    mtls_url: str, pki: Pki, transport_class: Callable[..., Transport]
) -> None:
    trusting = transport_class(ssl_context=ssl.create_default_context(cadata=pki.ca.cert))
    try:
        with pytest.raises(TransportError):
            await trusting.send(whoami(mtls_url), 5.0)
    finally:
        await trusting.close()


async def test_a_certificate_from_another_ca_is_refused(
    transport: Transport, mtls_url: str, secrets: SecretResolver
) -> None:
    spec = MtlsAuth(
        type="mtls", cert="env:PB_STRANGER_CERT", key="env:PB_STRANGER_KEY", ca="env:PB_CA"
    )
    auth = build_authenticator(spec, secrets, transport)
    with pytest.raises(TransportError):
        await transport.send(await auth.apply(whoami(mtls_url)), 5.0)


async def test_without_the_ca_the_server_is_not_trusted(
    transport: Transport, mtls_url: str, secrets: SecretResolver
) -> None:
    spec = MtlsAuth(type="mtls", cert="file:client.pem", key="env:PB_CLIENT_KEY")
    auth = build_authenticator(spec, secrets, transport)
    with pytest.raises(TransportError, match=r"(?i)certificate"):
        await transport.send(await auth.apply(whoami(mtls_url)), 5.0)


async def test_plain_and_mtls_requests_share_one_transport(
    transport: Transport, mtls_url: str, secrets: SecretResolver
) -> None:
    spec = MtlsAuth(type="mtls", cert="file:client.pem", key="env:PB_CLIENT_KEY", ca="env:PB_CA")
    auth = build_authenticator(spec, secrets, transport)
    for _ in range(3):
        ok = await transport.send(await auth.apply(whoami(mtls_url)), 5.0)
        assert ok.status == 200
        # the pooled mTLS connection is never lent to a request without the certificate
        with pytest.raises(TransportError):
            await transport.send(whoami(mtls_url), 5.0)
