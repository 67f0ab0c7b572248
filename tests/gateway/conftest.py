"""Gateway test fixtures: the example billing API and gateways on loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from patchbay.gateway import create_app
from patchbay.observe import MemorySink
from patchbay.runtime import ToolRuntime
from patchbay.spec import Config
from patchbay.testing import BillingServer

from .gateway_support import (
    ELEVENLABS_SECRET,
    RETELL_KEY,
    TOKEN,
    VAPI_SECRET,
    Stack,
    StackFactory,
    running,
)


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's secrets, where full_auth() references them."""
    monkeypatch.setenv("PB_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("PB_TEST_VAPI", VAPI_SECRET)
    monkeypatch.setenv("PB_TEST_RETELL", RETELL_KEY)
    monkeypatch.setenv("PB_TEST_ELEVENLABS", ELEVENLABS_SECRET)


@pytest.fixture
async def billing(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[BillingServer]:
    """The reference billing API on loopback, its key where the example config reads it."""
    async with BillingServer(in_process=True) as srv:
        monkeypatch.setenv("BILLING_API_KEY", srv.api_key)
        yield srv


@pytest.fixture
async def stack(secrets_env: None) -> AsyncIterator[StackFactory]:
    """Start gateways: `async with stack(config, **create_app_kw) as s:`."""
    session = aiohttp.ClientSession()

    @asynccontextmanager
    async def start(config: Config, **kw: Any) -> AsyncIterator[Stack]:
        events = MemorySink()
        async with (
            ToolRuntime(config, sinks=[events]) as rt,
            running(create_app(rt, config, **kw)) as url,
        ):
            yield Stack(rt, url, session, events)

    try:
        yield start
    finally:
        await session.close()
