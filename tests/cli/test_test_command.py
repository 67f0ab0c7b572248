"""`patchbay test` on the command line: listed, documented, and refusing bad targets early."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from patchbay.cli import app

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "examples" / "billing" / "patchbay.yaml")
SCENARIOS = str(ROOT / "examples" / "billing" / "scenarios.yaml")
runner = CliRunner()


def test_test_is_a_command_with_its_options() -> None:
    listed = runner.invoke(app, ["--help"])
    assert listed.exit_code == 0 and "test" in listed.output
    helped = runner.invoke(app, ["test", "--help"])
    assert helped.exit_code == 0
    for option in ("--against", "--junit", "--only", "--config"):
        assert option in helped.output
    assert "LIST[STR]" not in helped.output and "<" not in helped.output


@pytest.mark.parametrize(
    ("against", "why"),
    [
        (["mock", "http://127.0.0.1:9"], "give it alone"),
        (["billing=http://127.0.0.1:9", "http://127.0.0.1:9"], "each is NAME=URL"),
        (["billing=127.0.0.1:9"], "not a base URL"),
    ],
)
def test_bad_targets_exit_2(against: list[str], why: str) -> None:
    argv = ["test", SCENARIOS, "-c", CONFIG]
    for target in against:
        argv += ["--against", target]
    result = runner.invoke(app, argv, env={"BILLING_API_KEY": "k"})
    assert result.exit_code == 2
    assert why in result.stderr


def test_the_installed_script_runs_the_example_against_the_mock() -> None:
    """As `make test` users and CI run it: a process, its exit status and its report."""
    result = subprocess.run(
        [sys.executable, "-m", "patchbay.cli", "test", SCENARIOS, "-c", CONFIG],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"BILLING_API_KEY": "any", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    pay_bill" in result.stdout
