"""`patchbay audit verify`: 0 for an intact trail written by `patchbay call`, 1 naming the first
broken line, 2 for input it cannot check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

AUDIT_KEY = "cli-audit-key-8c2d"
CALLER = "+15551234567"

CONFIG = """
version: 1
observe:
  audit: {path: logs/audit.jsonl, key: env:PB_AUDIT_KEY}
integrations:
  billing:
    base_url: http://127.0.0.1:9
    auth: {type: api_key, header: X-API-Key, secret: env:PB_BILLING_KEY}
    retry: {attempts: 1}
tools:
  create_payment:
    integration: billing
    description: Pay an invoice.
    parameters:
      invoice_id: {type: string}
      amount: {type: integer, minimum: 1}
      payment_method_id: {type: string}
    request:
      method: POST
      path: /payments
      body: {invoice_id: "{args.invoice_id}", amount: "{args.amount}",
             payment_method_id: "{args.payment_method_id}"}
    idempotency: {key: "call_{call.id}_invoice_{args.invoice_id}"}
    audit: [amount, invoice_id]
    budget_s: 2
"""
ENV = {"PB_AUDIT_KEY": AUDIT_KEY, "PB_BILLING_KEY": "billing-key-value-5e6f"}


def patchbay(
    folder: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "patchbay.cli", *argv],
        cwd=folder,
        env={"PATH": os.environ.get("PATH", ""), **(env if env is not None else ENV)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _trail(tmp_path: Path) -> Path:
    (tmp_path / "patchbay.yaml").write_text(CONFIG)
    args = json.dumps({"invoice_id": "inv_1001", "amount": 24700, "payment_method_id": "pm_1"})
    for call_id in ("c-1", "c-2", "c-3"):
        done = patchbay(tmp_path, "call", "create_payment", "--args", args, "--call-id", call_id,
                        "--caller", CALLER)  # fmt: skip
        assert done.returncode == 0, done.stderr
    return tmp_path / "logs" / "audit.jsonl"


def test_an_intact_trail_verifies_with_its_key(tmp_path: Path) -> None:
    path = _trail(tmp_path)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["call_id"] for x in lines] == ["c-1", "c-2", "c-3"]
    assert lines[0]["fields"] == {"amount": 24700, "invoice_id": "inv_1001"}
    assert CALLER not in path.read_text() and "call_c-1_invoice" not in path.read_text()
    by_config = patchbay(tmp_path, "audit", "verify", "-c", "patchbay.yaml", str(path))
    assert by_config.returncode == 0, by_config.stderr
    assert "3 lines intact (keyed)" in by_config.stdout
    by_env = patchbay(tmp_path, "audit", "verify", "--key-env", "PB_AUDIT_KEY", str(path))
    assert by_env.returncode == 0, by_env.stderr


def test_an_edited_line_exits_1_naming_it(tmp_path: Path) -> None:
    path = _trail(tmp_path)
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"amount":24700', '"amount":100')
    path.write_text("\n".join(lines) + "\n")
    done = patchbay(tmp_path, "audit", "verify", "--key-env", "PB_AUDIT_KEY", str(path))
    assert done.returncode == 1
    assert f"{path}:2:" in done.stderr and "edited" in done.stderr


def test_a_removed_line_exits_1(tmp_path: Path) -> None:
    path = _trail(tmp_path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[2]]) + "\n")
    done = patchbay(tmp_path, "audit", "verify", "--key-env", "PB_AUDIT_KEY", str(path))
    assert done.returncode == 1 and f"{path}:2:" in done.stderr and "removed" in done.stderr
    path.write_text(lines[2] + "\n")  # only the last line left: the trail's start is gone
    done = patchbay(tmp_path, "audit", "verify", "--key-env", "PB_AUDIT_KEY", str(path))
    assert done.returncode == 1 and f"{path}:1:" in done.stderr
    argv = ("audit", "verify", "--partial", "--key-env", "PB_AUDIT_KEY", str(path))
    assert patchbay(tmp_path, *argv).returncode == 0  # earlier files archived elsewhere


def test_a_keyed_trail_does_not_verify_without_its_key(tmp_path: Path) -> None:
    path = _trail(tmp_path)
    done = patchbay(tmp_path, "audit", "verify", str(path))
    assert done.returncode == 1 and "give its key" in done.stderr


def test_input_it_cannot_check_exits_2(tmp_path: Path) -> None:
    missing = patchbay(tmp_path, "audit", "verify", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "nope.jsonl" in missing.stderr
    (tmp_path / "a.jsonl").write_text("")
    unset = patchbay(tmp_path, "audit", "verify", "--key-env", "PB_UNSET", "a.jsonl", env={})
    assert unset.returncode == 2 and "PB_UNSET" in unset.stderr
