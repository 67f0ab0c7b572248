"""`patchbay docs` and `patchbay mock` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from patchbay.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "billing" / "patchbay.yaml"
runner = CliRunner()


@pytest.mark.parametrize(("fmt", "name"), [("md", "billing.md"), ("html", "billing.html")])
def test_docs_writes_one_page_per_integration(tmp_path: Path, fmt: str, name: str) -> None:
    result = runner.invoke(app, ["docs", "-c", str(EXAMPLE), "-o", str(tmp_path), "-f", fmt])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(tmp_path / name)
    text = (tmp_path / name).read_text(encoding="utf-8")
    assert "create_payment" in text and "PAY_422_AMOUNT" in text


def test_docs_takes_example_interactions_from_a_scenario_file(tmp_path: Path) -> None:
    scenarios = tmp_path / "scenarios.yaml"
    scenarios.write_text(
        "scenarios:\n"
        "  lookup_by_phone:\n"
        '    call: {id: t-1, caller: "+15551234567"}\n'
        "    steps:\n"
        "      - tool: lookup_customer_invoices\n"
        '        args: {phone: "555-123-4567"}\n'
        "        expect: {ok: true, result: {customer_name: Jamie Patel}}\n"
    )
    out = tmp_path / "out"
    argv = ["docs", "-c", str(EXAMPLE), "-o", str(out), "--scenarios", str(scenarios)]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    text = (out / "billing.md").read_text(encoding="utf-8")
    assert '- `lookup_by_phone`: `{"phone": "555-123-4567"}` expects' in text


def test_docs_with_a_bad_scenario_file_exits_2(tmp_path: Path) -> None:
    scenarios = tmp_path / "scenarios.yaml"
    scenarios.write_text("scenarios: {}\n")
    argv = ["docs", "-c", str(EXAMPLE), "-o", str(tmp_path), "--scenarios", str(scenarios)]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert not list(tmp_path.glob("*.md"))


def test_docs_with_a_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "patchbay.yaml"
    bad.write_text("version: 1\ntools:\n  t: {description: d, integration: nowhere}\n")
    result = runner.invoke(app, ["docs", "-c", str(bad), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert not (tmp_path / "out").exists()


def test_an_example_naming_an_unknown_argument_is_refused(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace(
        "      - args: {customer_id: cus_unknown}", "      - args: {customer: cus_unknown}"
    )
    bad = tmp_path / "patchbay.yaml"
    bad.write_text(text)
    result = runner.invoke(app, ["validate", "-c", str(bad)])
    assert result.exit_code == 2
    assert (
        "tools.get_customer" in result.output and "'customer' is not a parameter" in result.output
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_mock_serves_the_example_until_interrupted() -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "BILLING_API_KEY"}
    command = [
        sys.executable,
        "-m",
        "patchbay.cli",
        "mock",
        "-c",
        str(EXAMPLE),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # printed once the port listens
        assert first.startswith(f"billing: http://127.0.0.1:{port} ("), first
        url = f"http://127.0.0.1:{port}/customers/cus_8F2kLq"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 401
        request = urllib.request.Request(url, headers={"X-API-Key": "k"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = json.load(answer)
        assert body["data"]["customer"]["name"] == "Jamie Patel"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_mock_with_a_bad_openapi_document_exits_2(tmp_path: Path) -> None:
    spec = tmp_path / "openapi.yaml"
    spec.write_text("- not a mapping\n")
    result = runner.invoke(app, ["mock", "-c", str(EXAMPLE), "--openapi", str(spec)])
    assert result.exit_code == 2
    assert "not an OpenAPI document" in result.output


def test_mock_on_a_busy_port_says_which(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["mock", "-c", str(EXAMPLE), "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


CLINIC = """
version: 1
integrations:
  clinic:
    base_url: ${CLINIC_URL:-http://127.0.0.1:9}
    auth: {type: bearer, secret: env:CLINIC_TOKEN}
tools:
  book_appointment:
    integration: clinic
    description: Book a free slot for the caller.
    when: The caller has picked a slot.
    parameters:
      slot_id: {type: string, pattern: "^s_[0-9]+$"}
      name: {type: string}
    request:
      method: POST
      path: /appointments
      body: {slot: "{args.slot_id}", patient: {name: "{args.name}"}}
    idempotency: {key: "book_{call.id}_{args.slot_id}"}
    response:
      root: data.appointment
      fields: {booked: "state == 'confirmed'", appointment_id: id, slot_id: slot_id}
    say: {failed: "I can't book right now."}
"""

CLINIC_SCENARIOS = """
scenarios:
  book:
    call: {id: c-1}
    steps:
      - tool: book_appointment
        args: {slot_id: s_42, name: Ana}
        expect: {ok: true, result: {booked: true, slot_id: s_42}}
  clinic_down:
    call: {id: c-2}
    steps:
      - tool: book_appointment
        args: {slot_id: s_43, name: Ana}
        faults: [{status: 503}]
        expect: {ok: false, error: {code: pending}}
"""


def test_a_newcomer_mocks_tests_and_documents_their_own_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "patchbay.yaml").write_text(CLINIC)
    (tmp_path / "scenarios.yaml").write_text(CLINIC_SCENARIOS)
    monkeypatch.setenv("CLINIC_TOKEN", "anything")
    config, scenarios = str(tmp_path / "patchbay.yaml"), str(tmp_path / "scenarios.yaml")
    tested = runner.invoke(app, ["test", scenarios, "-c", config])
    assert tested.exit_code == 0, tested.output
    out = tmp_path / "site"
    argv = ["docs", "-c", config, "-o", str(out), "-f", "html", "--scenarios", scenarios]
    documented = runner.invoke(app, argv)
    assert documented.exit_code == 0, documented.output
    page = (out / "clinic.html").read_text(encoding="utf-8")
    assert "book_appointment" in page and "The caller has picked a slot." in page
    assert "I can&#x27;t book right now." in page and "<strong>clinic_down</strong>" in page
