"""`patchbay test`: scenario files run through the real runtime, against the billing example
service and the mock, with faults injected; reports, JUnit XML and exit codes."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from patchbay.cli import app
from patchbay.spec import load_config
from patchbay.testing import BillingServer, Fault, FaultKind, load_scenarios
from patchbay.testing._scenarios import subset_mismatches

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "billing"
CONFIG = str(EXAMPLE / "patchbay.yaml")
SCENARIOS = str(EXAMPLE / "scenarios.yaml")
runner = CliRunner()

PAY = "{invoice_id: inv_1001, amount: 24700, payment_method_id: pm_card_visa4242}"
STATE = "{customer_id: cus_8F2kLq, open_invoice_amount: 24700}"


@pytest.fixture
def service() -> Iterator[BillingServer]:
    """A freshly seeded billing service: the example's scenarios expect Jamie's open invoice."""
    with BillingServer(in_process=True) as server:
        yield server


def run(*argv: str, key: str = "demo-key") -> Result:
    return runner.invoke(app, ["test", *argv], env={"BILLING_API_KEY": key})


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "scenarios.yaml"
    path.write_text(text)
    return str(path)


def test_the_example_scenarios_pass_against_the_example_service(
    service: BillingServer, tmp_path: Path
) -> None:
    report = tmp_path / "junit.xml"
    result = run(SCENARIOS, "-c", CONFIG, "--against", service.url, "--junit", str(report))
    assert result.exit_code == 0, result.output
    names = list(load_scenarios(SCENARIOS).scenarios)
    for name in names:
        assert f"ok    {name}" in result.stdout
    assert f"{len(names)} scenarios: {len(names)} passed" in result.stdout
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == (
        str(len(names)),
        "0",
        "0",
    )
    assert [case.get("name") for case in suite.iter("testcase")] == names
    # Every payment of every scenario carried call t-1's key: Jamie was charged once.
    ledger = asyncio.run(service.ledger())
    assert ledger["charges_by_invoice"] == {"inv_1001": 1}


def test_the_example_scenarios_pass_against_the_mock() -> None:
    result = run(SCENARIOS, "-c", CONFIG)
    assert result.exit_code == 0, result.output
    assert "against the mock" in result.stdout
    assert "0 failed" not in result.stdout and "failed" not in result.stdout


def test_a_wrong_expectation_fails_with_the_difference_and_exit_1(
    service: BillingServer, tmp_path: Path
) -> None:
    file = write(
        tmp_path,
        f"""
scenarios:
  wrong_name:
    steps:
      - tool: get_customer
        args: {{customer_id: cus_8F2kLq}}
        expect: {{ok: true, result: {{customer_name: Jamie P.}}, meta: {{attempts: 2}}}}
      - tool: get_customer
        args: {{customer_id: cus_8F2kLq}}
  right:
    call: {{id: t-9, state: {STATE}}}
    steps:
      - tool: create_payment
        args: {PAY}
        faults: [{{status: 500, times: 1}}]
        expect: {{ok: true, meta: {{attempts: 2}}}}
""",
    )
    report = tmp_path / "junit.xml"
    result = run(file, "-c", CONFIG, "--against", service.url, "--junit", str(report))
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "FAIL  wrong_name  step 1 of 2: get_customer" in out
    assert '$.result.customer_name: expected "Jamie P.", got "Jamie Patel"' in out
    assert "$.meta.attempts: expected 2, got 1" in out
    assert "ok    right  1 step" in out
    assert "2 scenarios: 1 passed, 1 failed" in out
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    failure = suite.find("testcase[@name='wrong_name']/failure")
    assert failure is not None and failure.text is not None
    assert 'expected "Jamie P.", got "Jamie Patel"' in failure.text
    assert suite.find("testcase[@name='right']/failure") is None


def test_faults_last_for_their_step_only(service: BillingServer, tmp_path: Path) -> None:
    file = write(
        tmp_path,
        """
scenarios:
  outage_then_recovery:
    steps:
      - tool: get_customer
        args: {customer_id: cus_8F2kLq}
        faults: [{status: 503}]
        expect: {ok: false, error: {code: upstream_unavailable}, meta: {attempts: 3}}
      - tool: get_customer
        args: {customer_id: cus_8F2kLq}
        expect: {ok: true, result: {customer_name: Jamie Patel}, meta: {attempts: 1}}
""",
    )
    result = run(file, "-c", CONFIG, "--against", f"billing={service.url}")
    assert result.exit_code == 0, result.output


def test_retry_after_waits_take_no_time(service: BillingServer, tmp_path: Path) -> None:
    # Two 429s asking for 3 s each, within a 3.5 s budget: had the first wait really taken 3 s,
    # the second could not fit what is left of the budget and the call would be rate_limited.
    file = write(
        tmp_path,
        """
scenarios:
  busy:
    budget_s: 3.5
    steps:
      - tool: get_customer
        args: {customer_id: cus_8F2kLq}
        faults: [{status: 429, times: 2, retry_after: 3}]
        expect: {ok: true, meta: {attempts: 3}}
""",
    )
    result = run(file, "-c", CONFIG, "--against", service.url)
    assert result.exit_code == 0, result.output


def test_junit_xml_stays_well_formed_whatever_the_text(
    service: BillingServer, tmp_path: Path
) -> None:
    file = write(
        tmp_path,
        """
scenarios:
  "<odd> & \\"name\\"":
    steps:
      - tool: get_customer
        args: {customer_id: cus_8F2kLq}
        expect: {say: "]]> <b>&amp; \\x01\\x1b"}
""",
    )
    report = tmp_path / "junit.xml"
    result = run(file, "-c", CONFIG, "--against", service.url, "--junit", str(report))
    assert result.exit_code == 1, result.output
    case = ET.parse(report).getroot().find("testsuite/testcase")
    assert case is not None and case.get("name") == '<odd> & "name"'
    failure = case.find("failure")
    assert failure is not None and failure.text is not None
    assert "]]> <b>&amp;" in failure.text


@pytest.mark.parametrize(
    ("text", "where", "why"),
    [
        (
            "scenarios:\n  pay_bill:\n    steps:\n      - tool: get_customer\n"
            "        faults: [{status: 500}, {kind: boom}]\n",
            ":5: scenarios.pay_bill.steps[0].faults[1]",
            "unknown fault kind 'boom'",
        ),
        (
            "scenarios:\n  a:\n    steps:\n      - tool: no_such_tool\n",
            ":4: scenarios.a.steps[0].tool",
            "unknown tool 'no_such_tool'",
        ),
        (
            "scenarios:\n  a:\n    steps:\n      - tool: get_customer\n        expect: {okk: 1}\n",
            ":5: scenarios.a.steps[0].expect.okk",
            "unknown key 'okk'",
        ),
        (
            "scenarios:\n  a:\n    steps:\n      - tool: get_customer\n"
            "        faults: [{status: 429, times: -1}]\n",
            "scenarios.a.steps[0].faults[0]",
            "times must be None or >= 0",
        ),
        ("scenarios:\n  a: {steps: [\n", ":3", "YAML syntax error"),
        ("scenarios:\n  a:\n    steps: []\n", "scenarios.a.steps", "at least one"),
        ("- just a list\n", "scenarios.yaml", "a mapping with `scenarios:`"),
        (
            "scenarios:\n  a:\n    steps: [{tool: get_customer}]\n"
            "  a:\n    steps: [{tool: get_customer}]\n",
            ":4: scenarios.a",
            "given twice",
        ),
        (
            "scenarios:\n  a:\n    steps: [{tool: get_customer, args: &x {y: *x}}]\n",
            "scenarios.yaml",
            "names a mapping or list it is inside of",
        ),
    ],
)
def test_bad_scenario_files_exit_2_naming_where(
    tmp_path: Path, text: str, where: str, why: str
) -> None:
    result = run(write(tmp_path, text), "-c", CONFIG, "--against", "http://127.0.0.1:9")
    assert result.exit_code == 2, result.output
    assert where in result.stderr and why in result.stderr, result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["/nonexistent/scenarios.yaml", "-c", CONFIG], "cannot read the scenario file"),
        ([SCENARIOS, "-c", CONFIG, "--against", "ftp://x"], "not a base URL"),
        ([SCENARIOS, "-c", CONFIG, "--against", "crm=http://x"], "no integration 'crm'"),
        ([SCENARIOS, "-c", CONFIG, "--only", "nope"], "no such scenario"),
        ([SCENARIOS, "-c", "/nonexistent/patchbay.yaml"], "patchbay.yaml"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], why: str) -> None:
    result = run(*argv)
    assert result.exit_code == 2, result.output
    assert why in result.stderr
    assert "Traceback" not in result.output


def test_a_secret_that_does_not_resolve_exits_2_before_any_request() -> None:
    result = runner.invoke(app, ["test", SCENARIOS, "-c", CONFIG], env={"BILLING_API_KEY": None})
    assert result.exit_code == 2
    assert "BILLING_API_KEY" in result.stderr
    assert "any value" in result.stderr  # the mock takes any credential


def test_load_scenarios_gives_steps_for_the_docs() -> None:
    loaded = load_scenarios(SCENARIOS, load_config(CONFIG))
    pay = loaded.scenarios["pay_bill"]
    assert pay.call.id == "t-1" and pay.call.caller == "+15551234567"
    assert [s.tool for s in pay.steps] == ["lookup_customer_invoices", "create_payment"]
    retried = loaded.scenarios["server_error_is_retried"].steps[0]
    assert retried.faults == (Fault(FaultKind.STATUS, status=500, times=1),)
    assert retried.fault_mappings == ({"status": 500, "times": 1},)


@pytest.mark.parametrize(
    ("mapping", "fault"),
    [
        ({"status": 500, "times": 1}, Fault("status", status=500, times=1)),
        (
            {"status": 429, "times": 1, "retry_after": 60},
            Fault("status", status=429, times=1, retry_after=60),
        ),
        ({"kind": "hang"}, Fault("hang")),
        ({"kind": "reset", "times": 2}, Fault("reset", times=2)),
        ({"kind": "lose_response"}, Fault("lose_response")),
        ({"kind": "slow", "delay_s": 2}, Fault("slow", delay_s=2)),
        ({"kind": "garbage"}, Fault("garbage")),
        (
            {"status": 503, "method": "post", "path_prefix": "/payments"},
            Fault("status", status=503, method="POST", path_prefix="/payments"),
        ),
    ],
)
def test_fault_from_mapping(mapping: dict[str, Any], fault: Fault) -> None:
    assert Fault.from_mapping(mapping) == fault


@pytest.mark.parametrize(
    ("mapping", "why"),
    [
        ({"kind": "boom"}, "unknown fault kind 'boom'"),
        ({"times": 1}, "needs a kind"),
        ({"status": "500"}, "status must be an HTTP status"),
        ({"status": 200, "times": True}, "times must be a whole number"),
        ({"status": 99}, "status must be an HTTP status"),
        ({"kind": "slow", "delay_s": -1}, "delay_s must be >= 0"),
        ({"kind": "hang", "sometimes": 1}, "unknown fault key 'sometimes'"),
        ([500], "a fault is a mapping"),
    ],
)
def test_fault_from_mapping_refuses_mistakes(mapping: Any, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Fault.from_mapping(mapping)


@pytest.mark.parametrize(
    ("expected", "got", "differences"),
    [
        ({"a": 1}, {"a": 1, "b": 2}, []),
        ({"a": {"b": [1, {"c": "x"}]}}, {"a": {"b": [1, {"c": "x", "d": 0}], "e": 1}}, []),
        ({"a": 1}, {"a": 1.0}, []),
        ({"a": 1}, {"a": True}, ["$.a: expected 1, got true"]),
        ({"a": True}, {"a": 1}, ["$.a: expected true, got 1"]),
        ({"a": None}, {"a": 0}, ["$.a: expected null, got 0"]),
        ({"a": "x"}, {}, ['$.a: expected "x", but the result has no such key']),
        ({"a": [1, 2]}, {"a": [1]}, ["$.a: expected a list of 2, got a list of 1: [1]"]),
        ({"a": [{"b": 1}]}, {"a": [{"b": 2}]}, ["$.a[0].b: expected 1, got 2"]),
        ({"a": {"b": 1}}, {"a": "b"}, ['$.a: expected {"b": 1}, got "b"']),
        ({"x y": 1}, {"x y": 2}, ["$['x y']: expected 1, got 2"]),
    ],
)
def test_subset_matching(expected: Any, got: Any, differences: list[str]) -> None:
    assert [str(m) for m in subset_mismatches(expected, got)] == differences


def test_results_reach_the_report_as_json(service: BillingServer, tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "scenarios:\n  a:\n    steps:\n      - tool: get_customer\n"
        "        args: {customer_id: cus_8F2kLq}\n        expect: {ok: false}\n",
    )
    result = run(file, "-c", CONFIG, "--against", service.url)
    got = next(line for line in result.stdout.splitlines() if "got: " in line)
    assert json.loads(got.split("got: ", 1)[1])["result"]["customer_name"] == "Jamie Patel"


def test_a_started_call_prefetches_and_carries_its_state(
    service: BillingServer, tmp_path: Path
) -> None:
    # start: true runs the call-start prefetch (the lookup by the caller's number), so the
    # lookup step is answered from it; the payment then uses the state the lookup left.
    file = write(
        tmp_path,
        f"""
scenarios:
  greeting:
    call: {{id: t-1, caller: "+15551234567", start: true}}
    steps:
      - tool: lookup_customer_invoices
        args: {{phone: "+15551234567"}}
        expect: {{ok: true, result: {{invoice_count: 1}}, meta: {{prefetched: true}}}}
      - tool: create_payment
        args: {PAY}
        expect: {{ok: true, result: {{success: true}}}}
""",
    )
    result = run(file, "-c", CONFIG, "--against", service.url)
    assert result.exit_code == 0, result.output
