"""`patchbay import openapi` as a newcomer runs it: import, set two variables, call a tool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from patchbay.testing import BillingServer

BASE_ENV = {k: os.environ[k] for k in ("HOME", "PATH") if k in os.environ}


def patchbay(
    folder: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "patchbay.cli", *argv],
        cwd=folder,
        env={**BASE_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_then_call_the_billing_api(tmp_path: Path, billing_openapi: str) -> None:
    (tmp_path / "billing-openapi.yaml").write_text(billing_openapi)
    done = patchbay(tmp_path, "import", "openapi", "billing-openapi.yaml", "-o", "patchbay.yaml")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "5 tools, 0 skipped" in done.stderr
    assert "BILLING_URL, BILLING_API_KEY" in done.stderr
    with BillingServer(in_process=True) as server:
        env = {"BILLING_URL": server.url, "BILLING_API_KEY": server.api_key}
        checked = patchbay(tmp_path, "validate", env=env)
        assert checked.returncode == 0, checked.stderr
        assert checked.stdout.strip() == "ok: 1 integrations, 5 tools"
        call = ("call", "get_customer", "--args", '{"id": "cus_8F2kLq"}', "--events")
        got = patchbay(tmp_path, *call, env=env)
        assert got.returncode == 0, got.stderr
        # The imported contract of the answer holds for the real service: no contract event.
        config = yaml.safe_load((tmp_path / "patchbay.yaml").read_text())
        assert "customer" in json.dumps(config["tools"]["get_customer"]["response"]["expect"])
        assert '"kind":"attempt"' in got.stderr and '"kind":"contract"' not in got.stderr
        answer = json.loads(got.stdout)
        assert answer["ok"] is True, answer
        assert answer["result"]["data"]["customer"]["name"] == "Jamie Patel"
        pay = {
            "customer_id": "cus_8F2kLq",
            "invoice_id": "inv_1001",
            "amount": 24700,
            "payment_method_id": "pm_card_visa4242",
        }
        paid = [
            json.loads(
                patchbay(
                    tmp_path,
                    "call",
                    "create_payment",
                    "--args",
                    json.dumps(pay),
                    "--call-id",
                    "c-7",
                    env=env,
                ).stdout
            )
            for _ in range(2)
        ]
        assert paid[0]["ok"] is True, paid[0]
        assert paid[0]["meta"]["idempotency_key"] == "c-7_create_payment_cus_8F2kLq_inv_1001"
        # the same call and invoice again: the API answers the first payment, charges nothing
        assert paid[1]["result"] == paid[0]["result"]


def test_stdout_is_the_config_and_skips_go_to_stderr(tmp_path: Path) -> None:
    (tmp_path / "api.json").write_text(
        json.dumps(
            {
                "openapi": "3.1.0",
                "info": {"title": "Shop", "version": "1"},
                "paths": {
                    "/items": {
                        "get": {"operationId": "listItems", "summary": "List items."},
                        "post": {
                            "operationId": "createItem",
                            "requestBody": {
                                "required": True,
                                "content": {"multipart/form-data": {}},
                            },
                        },
                        "options": {"operationId": "itemOptions"},
                    }
                },
            }
        )
    )
    done = patchbay(tmp_path, "import", "openapi", "api.json", "--integration", "store")
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert list(config["integrations"]) == ["store"]
    assert list(config["tools"]) == ["list_items"]
    skipped = [line for line in done.stderr.splitlines() if line.startswith("skipped: ")]
    assert skipped == [
        "skipped: POST /items: required body: a request body of multipart/form-data "
        "(JSON and form bodies are sent)",
        "skipped: OPTIONS /items: patchbay sends GET, POST, PUT, PATCH, DELETE",
    ]
    assert "STORE_URL" in done.stderr


def test_unreadable_input_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("openapi: [3.0\n")
    (tmp_path / "other.yaml").write_text("name: not an api\n")
    (tmp_path / "rest.yaml").write_text("paths: {}\nversion: 1\n")
    for name, words in [
        ("missing.yaml", "cannot read missing.yaml"),
        ("broken.yaml", "broken.yaml is not JSON or YAML"),
        ("other.yaml", "other.yaml is not an OpenAPI document"),
        ("rest.yaml", "declares neither `openapi: 3.x` nor `swagger: 2.0`"),
    ]:
        done = patchbay(tmp_path, "import", "openapi", name, "-o", "out.yaml")
        assert done.returncode == 2, (name, done.stderr)
        assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr
        assert not (tmp_path / "out.yaml").exists()


def test_help_reads_plainly(tmp_path: Path) -> None:
    done = patchbay(tmp_path, "import", "openapi", "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: patchbay import openapi [OPTIONS] SPEC" in done.stdout
    assert "--include PATTERN" in done.stdout and "<str>" not in done.stdout
    assert "import" in patchbay(tmp_path, "--help").stdout


def test_a_bad_integration_name_is_refused(tmp_path: Path, billing_openapi: str) -> None:
    (tmp_path / "api.yaml").write_text(billing_openapi)
    done = patchbay(tmp_path, "import", "openapi", "api.yaml", "--integration", "my api")
    assert done.returncode == 2 and done.stdout == ""
    assert "--integration 'my api': use letters" in done.stderr
    named = patchbay(tmp_path, "import", "openapi", "api.yaml", "--integration", "ledger-v2")
    assert named.returncode == 0, named.stderr
    assert "LEDGER_V2_URL, LEDGER_V2_API_KEY" in named.stderr
    assert list(yaml.safe_load(named.stdout)["integrations"]) == ["ledger-v2"]
