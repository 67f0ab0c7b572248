"""Test helpers: the reference billing API on loopback, and a proxy that injects faults."""

from patchbay.testing._faults import Fault, FaultKind, FaultProxy, ProxyStats
from patchbay.testing._servers import BillingServer, find_billing_service

__all__ = [
    "BillingServer",
    "Fault",
    "FaultKind",
    "FaultProxy",
    "ProxyStats",
    "find_billing_service",
]
