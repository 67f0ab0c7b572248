"""A real billing API behind a fault-injecting proxy, and runtimes with resilience settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from patchbay import ToolRuntime
from patchbay.observe import MemorySink
from patchbay.state import MemoryStore, StateStore

from .support import RuntimeFactory, billing_config


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def make_runtime(env: dict[str, str]) -> AsyncIterator[RuntimeFactory]:
    """Build runtimes from `billing_yaml` text; each gets its own memory store unless given one."""
    made: list[ToolRuntime] = []

    def make(
        text: str,
        *,
        store: StateStore | None = None,
        sink: MemorySink | None = None,
        fast: bool = True,
    ) -> ToolRuntime:
        rt = ToolRuntime(
            billing_config(env, text),
            sinks=[sink] if sink else [],
            sleep=_no_sleep if fast else asyncio.sleep,
            store=store if store is not None else MemoryStore(),
        )
        made.append(rt)
        return rt

    yield make
    for rt in made:
        await rt.close()
