"""Start-up as an MCP stdio client runs patchbay: a subprocess with a handful of variables.

Secrets the config names are resolved before anything serves, so a missing one is a line on
stderr and exit 2 instead of an `internal` answer to every call; --help stays light.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path
from typing import get_args

from packaging.requirements import Requirement

from patchbay.cli._export import PlatformName
from patchbay.gateway import Platform

# What the official MCP client passes to a stdio server by default (no BILLING_API_KEY...).
MINIMAL_ENV = {k: os.environ[k] for k in ("HOME", "PATH", "LOGNAME", "USER") if k in os.environ}

CONFIG = """
version: 1
integrations:
  billing:
    base_url: http://127.0.0.1:9
    auth: {type: api_key, header: X-API-Key, secret: env:PB_BILLING_KEY}
    tenants:
      acme: {secret: "vault:billing#api_key"}
  crm:
    base_url: http://127.0.0.1:9
    auth: {type: bearer, secret: file:crm-token.txt}
gateway:
  auth:
    bearer: env:PB_GATEWAY_TOKEN
tools:
  get_customer:
    integration: billing
    description: Fetch a customer.
    parameters:
      customer_id: {type: string}
    request: {method: GET, path: "/customers/{customer_id}"}
  get_contact:
    integration: crm
    description: Fetch a contact.
    parameters:
      contact_id: {type: string}
    request: {method: GET, path: "/contacts/{contact_id}"}
"""

FILE_SECRET = "crm-token-value-93ab"
ENV_SECRET = "billing-key-value-17cd"


def patchbay_cli(
    folder: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "patchbay.cli", *argv],
        cwd=folder,
        env={**MINIMAL_ENV, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def project(tmp_path: Path, *, token_file: bool = True) -> Path:
    (tmp_path / "patchbay.yaml").write_text(CONFIG)
    if token_file:
        (tmp_path / "crm-token.txt").write_text(FILE_SECRET + "\n")
    return tmp_path


def test_validate_names_every_unresolvable_secret_by_location(tmp_path: Path) -> None:
    done = patchbay_cli(project(tmp_path, token_file=False), "validate")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "patchbay: integrations.billing.auth.secret: "
        "secret env:PB_BILLING_KEY is not set in the environment",
        "patchbay: integrations.billing.tenants.acme.secret: "
        "unknown secret scheme 'vault' (known: env, file)",
        "patchbay: integrations.crm.auth.secret: "
        "secret file:crm-token.txt cannot be read (No such file or directory)",
        "patchbay: gateway.auth.bearer: secret env:PB_GATEWAY_TOKEN is not set in the environment",
    ]
    assert "Traceback" not in done.stderr


def test_validate_never_prints_a_secret_value(tmp_path: Path) -> None:
    folder = project(tmp_path)
    done = patchbay_cli(folder, "validate", env={"PB_BILLING_KEY": ENV_SECRET})
    assert done.returncode == 2  # the vault: reference and the gateway token are still missing
    assert ENV_SECRET not in done.stdout + done.stderr
    assert FILE_SECRET not in done.stdout + done.stderr
    assert "integrations.billing.auth" not in done.stderr
    assert "integrations.crm" not in done.stderr


def test_an_empty_variable_is_not_a_secret(tmp_path: Path) -> None:
    done = patchbay_cli(project(tmp_path), "validate", env={"PB_BILLING_KEY": ""})
    assert "integrations.billing.auth.secret: secret env:PB_BILLING_KEY is empty" in done.stderr


def test_serve_and_mcp_exit_2_at_start(tmp_path: Path) -> None:
    folder = project(tmp_path)
    for argv in (["serve", "--port", "0"], ["mcp"]):
        done = patchbay_cli(folder, *argv)
        assert done.returncode == 2, (argv, done.stderr)
        assert "integrations.billing.auth.secret: secret env:PB_BILLING_KEY" in done.stderr
        assert "Traceback" not in done.stderr
        assert done.stdout == ""  # an MCP client reads stdout as protocol


def test_call_checks_only_the_secrets_its_tool_may_use(tmp_path: Path) -> None:
    folder = project(tmp_path)
    # get_contact's integration has its secret; billing's and the gateway's do not matter here.
    done = patchbay_cli(folder, "call", "get_contact", "--args", '{"id": 1}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["error"]["code"] == "invalid_arguments"
    refused = patchbay_cli(folder, "call", "get_customer", "--args", '{"customer_id": "c1"}')
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "patchbay: integrations.billing.auth.secret: "
        "secret env:PB_BILLING_KEY is not set in the environment"
    ]
    as_acme = patchbay_cli(
        folder, "call", "get_customer", "--tenant", "acme", "--args", "{}",
        env={"PB_BILLING_KEY": ENV_SECRET},
    )  # fmt: skip
    assert as_acme.returncode == 2
    assert "integrations.billing.tenants.acme.secret" in as_acme.stderr


def test_validate_passes_when_every_secret_resolves(tmp_path: Path) -> None:
    folder = project(tmp_path)
    (folder / "patchbay.yaml").write_text(CONFIG.replace('"vault:billing#api_key"', "env:PB_ACME"))
    env = {"PB_BILLING_KEY": ENV_SECRET, "PB_ACME": "acme-key", "PB_GATEWAY_TOKEN": "tok"}
    done = patchbay_cli(folder, "validate", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok: 2 integrations, 2 tools"


def test_duplicate_tool_names_are_refused_with_their_lines(tmp_path: Path) -> None:
    folder = project(tmp_path)
    twice = CONFIG.replace("  get_contact:", "  get_customer:")
    (folder / "patchbay.yaml").write_text(twice)
    done = patchbay_cli(folder, "validate")
    assert done.returncode == 2
    assert "patchbay: tools.get_customer: given twice (lines 16 and 22)" in done.stderr


def test_help_does_not_import_the_mcp_sdk(tmp_path: Path) -> None:
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print(sorted(m for m in sys.modules if m.split('.')[0] == 'mcp'),"
        " file=sys.stderr))\n"
        "sys.argv = ['patchbay', '--help']\n"
        "from patchbay.cli import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=MINIMAL_ENV, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "[]"


def test_the_installed_package_requires_an_mcp_sdk_the_code_runs_on() -> None:
    found = [Requirement(r) for r in requires("patchbay") or [] if r.startswith("mcp")]
    assert len(found) == 1 and not found[0].marker
    spec = found[0].specifier
    assert "1.30.0" not in spec and "3.0.0" not in spec
    assert "2.0.0" in spec and "2.3.0" in spec


def test_export_platform_names_are_the_gateways() -> None:
    assert set(get_args(PlatformName)) == {p.value for p in Platform}
