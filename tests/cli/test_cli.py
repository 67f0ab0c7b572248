"""The command line as a user runs it: validate, tools, call, demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from patchbay.cli import app
from patchbay.testing import BillingServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "billing" / "patchbay.yaml"
runner = CliRunner()


@pytest.fixture
def billing_env(monkeypatch: pytest.MonkeyPatch) -> BillingServer:
    server = BillingServer(in_process=True).start()
    monkeypatch.setenv("BILLING_URL", server.url)
    monkeypatch.setenv("BILLING_API_KEY", server.api_key)
    monkeypatch.delenv("PATCHBAY_STATE", raising=False)
    yield server  # type: ignore[misc]
    server.stop()


def test_validate_the_example(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_API_KEY", "any-key")  # validate resolves every secret
    result = runner.invoke(app, ["validate", "-c", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "3 tools" in result.output


def test_validate_reports_every_mistake_with_its_location(tmp_path: Path) -> None:
    bad = tmp_path / "patchbay.yaml"
    bad.write_text(
        "version: 1\nintegrations:\n  api: {base_url: http://x.test}\ntools:\n"
        "  t:\n    integration: nowhere\n    description: d\n"
        '    request: {methd: GET, path: "/a/{id}"}\n'
    )
    result = runner.invoke(app, ["validate", "-c", str(bad)])
    assert result.exit_code == 2
    assert "tools.t.integration" in result.output
    assert "tools.t.request" in result.output and "methd" in result.output


def test_validate_missing_file_is_one_line() -> None:
    result = runner.invoke(app, ["validate", "-c", "/nonexistent/patchbay.yaml"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


@pytest.mark.parametrize("fmt", ["openai", "realtime", "anthropic", "gemini", "mcp"])
def test_tools_in_every_format(fmt: str) -> None:
    result = runner.invoke(app, ["tools", "-c", str(EXAMPLE), "--format", fmt])
    assert result.exit_code == 0, result.output
    exported = json.loads(result.output)
    assert len(exported) == 3
    assert "$ref" not in result.output


def test_tools_unknown_format_exits_2() -> None:
    result = runner.invoke(app, ["tools", "-c", str(EXAMPLE), "--format", "soap"])
    assert result.exit_code == 2


def test_call_prints_the_result_and_exits_0_whatever_the_outcome(
    billing_env: BillingServer,
) -> None:
    ok = runner.invoke(
        app,
        ["call", "-c", str(EXAMPLE), "lookup_customer_invoices", "--args",
         '{"phone": "555-123-4567"}', "--call-id", "c-1"],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    data = json.loads(ok.stdout)
    assert data["ok"] is True and data["result"]["customer_name"] == "Jamie Patel"
    bad = runner.invoke(
        app, ["call", "-c", str(EXAMPLE), "lookup_customer_invoices", "--args", '{"phone": "12"}']
    )
    assert bad.exit_code == 0
    assert json.loads(bad.stdout)["error"]["code"] == "invalid_arguments"


@pytest.mark.parametrize(
    "argv",
    [
        ["call", "-c", str(EXAMPLE), "no_such_tool"],
        ["call", "-c", str(EXAMPLE), "get_customer", "--args", "{not json"],
        ["call", "-c", str(EXAMPLE), "get_customer", "--args", "[1]"],
    ],
)
def test_call_refuses_bad_input_with_exit_2(argv: list[str], billing_env: BillingServer) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_call_with_an_unopenable_state_store_is_one_line(
    billing_env: BillingServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATCHBAY_STATE", f"sqlite:///{tmp_path}/missing/dir/state.db")
    result = runner.invoke(
        app, ["call", "-c", str(EXAMPLE), "get_customer", "--args", '{"customer_id": "cus_1"}']
    )
    assert result.exit_code == 2
    assert "state" in result.output and "Traceback" not in result.output


def test_call_state_carries_between_cli_runs_on_sqlite(
    billing_env: BillingServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATCHBAY_STATE", f"sqlite:////{tmp_path}/state.db".replace("////", "///"))
    args = ["--call-id", "c-cli"]
    look = runner.invoke(
        app,
        ["call", "-c", str(EXAMPLE), "lookup_customer_invoices", "--args",
         '{"phone": "555-123-4567"}', *args],
    )  # fmt: skip
    assert json.loads(look.stdout)["ok"] is True
    pay_args = (
        '{"invoice_id": "inv_1001", "amount": 24700, "payment_method_id": "pm_card_visa4242"}'
    )
    first = json.loads(
        runner.invoke(
            app, ["call", "-c", str(EXAMPLE), "create_payment", "--args", pay_args, *args]
        ).stdout
    )
    again = json.loads(
        runner.invoke(
            app, ["call", "-c", str(EXAMPLE), "create_payment", "--args", pay_args, *args]
        ).stdout
    )
    assert first["ok"] is True, first
    assert first["result"]["confirmation_number"] == again["result"]["confirmation_number"]


def test_demo_plays_the_call_end_to_end(tmp_path: Path) -> None:
    """`patchbay demo` from any folder (not only the repository's): the call, charged once."""
    result = subprocess.run(
        [sys.executable, "-m", "patchbay.cli", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert 'lookup_customer_invoices(phone="+15551234567")' in out
    assert "GET /customers/search" in out and "GET /invoices" in out
    assert "POST /payments" in out
    assert "Thanks, Jamie. I see a $247.00 open invoice" in out
    assert "Payment of $247.00 confirmed, confirmation number PAY-" in out
    assert "{'inv_1001': 1}" in out
    # The second call: the payment is processing, then its signed webhook arrives mid-call and
    # the agent says it cleared, with the number the billing API sent.
    processing = out.index("Your payment of $17.50 is processing")
    arrived = out.index("← POST /webhooks/billing  payment.succeeded  200")
    cleared = out.index("Agent: Your payment has cleared; confirmation PAY-")
    assert processing < arrived < cleared
    assert "{'inv_1001': 1, 'inv_2001': 1}" in out
