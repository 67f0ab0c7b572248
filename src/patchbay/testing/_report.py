"""Scenario run reports: a line per scenario for people, JUnit XML for CI."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from patchbay.testing._runner import RunReport, ScenarioOutcome

__all__ = ["failure_text", "progress_line", "summary_line", "write_junit"]

_SHOWN_RESULT = 2000  # characters of a failing step's result printed in full
# Characters XML 1.0 cannot carry at all, even escaped (an upstream's garbage may hold them).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def progress_line(outcome: ScenarioOutcome) -> str:
    """`ok    pay_bill  2 steps  0.21 s`, or FAIL with the failing step."""
    took = f"{outcome.seconds:.2f} s"
    if outcome.passed:
        steps = f"{outcome.step_count} step{'s' if outcome.step_count != 1 else ''}"
        return f"ok    {outcome.name}  {steps}  {took}"
    failed = outcome.failed_step
    if outcome.error is not None:
        where = f"error after {len(outcome.steps)} of {outcome.step_count} steps"
    elif failed is not None:
        where = f"step {failed.index + 1} of {outcome.step_count}: {failed.tool}"
    else:
        where = "did not finish"
    return f"FAIL  {outcome.name}  {where}  {took}"


def failure_text(outcome: ScenarioOutcome) -> str:
    """Why a scenario failed: each mismatch at its JSON path, then the result it got."""
    if outcome.error is not None:
        return f"the run broke: {outcome.error}"
    failed = outcome.failed_step
    if failed is None:
        return "the scenario did not finish"
    lines = [f"step {failed.index + 1} ({failed.tool}) returned something else:"]
    lines += [f"  {m}" for m in failed.mismatches]
    got = json.dumps(failed.result, ensure_ascii=False, sort_keys=True)
    if len(got) > _SHOWN_RESULT:
        got = got[:_SHOWN_RESULT] + "…"
    lines.append(f"  got: {got}")
    return "\n".join(lines)


def summary_line(report: RunReport) -> str:
    """`7 scenarios: 6 passed, 1 failed in 3.20 s`."""
    total = len(report.outcomes)
    passed = total - report.failures
    noun = "scenario" if total == 1 else "scenarios"
    failed = f", {report.failures} failed" if report.failures else ""
    return f"{total} {noun}: {passed} passed{failed} in {report.seconds:.2f} s"


def write_junit(report: RunReport, path: str | Path, suite: str = "patchbay scenarios") -> None:
    """JUnit XML: one testsuite, a testcase per scenario, a failure or error with its reason."""
    errors = sum(o.error is not None for o in report.outcomes)
    root = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(report.outcomes)),
        failures=str(report.failures - errors),
        errors=str(errors),
        skipped="0",
        time=f"{report.seconds:.3f}",
    )
    for outcome in report.outcomes:
        case = ET.SubElement(
            root,
            "testcase",
            classname=suite,
            name=_xml(outcome.name),
            time=f"{outcome.seconds:.3f}",
        )
        if outcome.passed:
            continue
        text = failure_text(outcome)
        tag = "error" if outcome.error is not None else "failure"
        # ElementTree escapes text and attributes; the first line is the short message.
        element = ET.SubElement(case, tag, message=_xml(progress_line(outcome)))
        element.text = _xml(text)
    suites = ET.Element("testsuites")
    suites.append(root)
    tree = ET.ElementTree(suites)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
