"""A real billing API behind a fault-injecting proxy, and runtimes built on the example config."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from patchbay import ToolRuntime
from patchbay.observe import MemorySink
from patchbay.spec import Config, load_config, load_config_text

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "billing"


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture
def example_config(env: dict[str, str]) -> Config:
    return load_config(EXAMPLE_DIR / "patchbay.yaml", env=env)


RuntimeFactory = Callable[..., ToolRuntime]


@pytest.fixture
async def make_runtime(env: dict[str, str]) -> AsyncIterator[RuntimeFactory]:
    made: list[ToolRuntime] = []

    def make(
        text: str | None = None, *, fast: bool = True, sink: MemorySink | None = None
    ) -> ToolRuntime:
        cfg = (
            load_config(EXAMPLE_DIR / "patchbay.yaml", env=env)
            if text is None
            else load_config_text(text, base_dir=EXAMPLE_DIR, env=env)
        )
        rt = ToolRuntime(
            cfg, sinks=[sink] if sink else [], sleep=_no_sleep if fast else asyncio.sleep
        )
        made.append(rt)
        return rt

    yield make
    for rt in made:
        await rt.close()
