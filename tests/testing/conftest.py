"""Fixtures for the testing helpers' tests: a billing upstream and a fault proxy before it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from patchbay.testing import BillingServer, FaultProxy


@pytest.fixture(scope="module")
def billing_server() -> Iterator[BillingServer]:
    """One billing upstream per module, in a thread: starting one per test costs 0.3 s."""
    with BillingServer(in_process=True) as server:
        yield server


@pytest.fixture
async def billing(billing_server: BillingServer) -> BillingServer:
    """The billing upstream with its seed data back and its counters at zero."""
    await billing_server.reset()
    return billing_server


@pytest.fixture
async def proxy(billing: BillingServer) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the billing upstream, seeded for repeatable chaos."""
    async with FaultProxy(billing.url, seed=7) as running:
        yield running


@pytest.fixture
async def client(proxy: FaultProxy, billing: BillingServer) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the proxy that sends the API key."""
    async with aiohttp.ClientSession(base_url=proxy.url, headers=billing.headers) as session:
        yield session
