"""Test helpers: a fake transport and clock for handler tests, scenario runs, the mock, the
reference billing API on loopback, and a proxy that injects faults."""

from patchbay.testing._fake import FakeClock, FakeTransport, UnscriptedRequest
from patchbay.testing._faults import Fault, FaultKind, FaultProxy, ProxyStats
from patchbay.testing._mock import MockApi
from patchbay.testing._runner import RunReport, ScenarioOutcome, StepOutcome, run_scenarios
from patchbay.testing._scenarios import (
    Mismatch,
    Scenario,
    ScenarioCall,
    Scenarios,
    Step,
    load_scenarios,
)
from patchbay.testing._servers import BillingServer, find_billing_service

__all__ = [
    "BillingServer",
    "FakeClock",
    "FakeTransport",
    "Fault",
    "FaultKind",
    "FaultProxy",
    "Mismatch",
    "MockApi",
    "ProxyStats",
    "RunReport",
    "Scenario",
    "ScenarioCall",
    "ScenarioOutcome",
    "Scenarios",
    "Step",
    "StepOutcome",
    "UnscriptedRequest",
    "find_billing_service",
    "load_scenarios",
    "run_scenarios",
]
