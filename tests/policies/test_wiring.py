"""The pipeline's order and its state store, as the runtime assembles them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from patchbay._errors import DeadlineExceeded
from patchbay.http import build_authenticator
from patchbay.observe import Emitter
from patchbay.runtime._pipeline import Pipelines
from patchbay.spec import load_config_text
from patchbay.state import MemoryStore

from .support import (
    BASE,
    FakeTransport,
    exchange_for,
    make_config,
    make_runtime,
    request_for,
    status,
)

ALL = {
    "breaker": {"min_calls": 3, "failure_rate": 0.5},
    "rate_limit": {"per_second": 100, "burst": 10},
    "quota": {"per_day": 1000},
}


async def test_the_order_is_the_designed_one() -> None:
    config = make_config(ALL, {"get_item": {"cache": {"ttl_s": 5}}})
    pipelines = Pipelines(config, Emitter(), transport=FakeTransport(), store=MemoryStore())
    api = config.integrations["api"]
    steps = pipelines.policies(api, build_authenticator(None, pipelines.secrets, FakeTransport()))
    assert [type(s).__name__ for s in steps] == [
        "DeadlinePolicy",
        "QuotaPolicy",
        "IdempotencyPolicy",
        "CachePolicy",
        "RetryPolicy",
        "BreakerPolicy",
        "RateLimitPolicy",
        "AuthPolicy",
    ]
    await pipelines.close()
    # Steps nothing in the config asks for are left out; the ledger stays for handlers' keys.
    plain = make_config()
    pipelines = Pipelines(plain, Emitter(), transport=FakeTransport(), store=MemoryStore())
    bare = pipelines.policies(
        plain.integrations["api"], build_authenticator(None, pipelines.secrets, FakeTransport())
    )
    assert [type(s).__name__ for s in bare] == [
        "DeadlinePolicy",
        "IdempotencyPolicy",
        "RetryPolicy",
        "AuthPolicy",
    ]
    await pipelines.close()


async def test_reads_go_without_the_write_only_steps() -> None:
    config = make_config(ALL, {"get_item": {"cache": {"ttl_s": 5}}})
    pipelines = Pipelines(config, Emitter(), transport=FakeTransport(), store=MemoryStore())
    auth = build_authenticator(None, pipelines.secrets, FakeTransport())
    reads = pipelines.policies(config.integrations["api"], auth, writes=False)
    assert [type(s).__name__ for s in reads] == [
        "QuotaPolicy",
        "CachePolicy",
        "RetryPolicy",
        "BreakerPolicy",
        "RateLimitPolicy",
        "AuthPolicy",
    ]
    await pipelines.close()


async def test_a_read_past_its_budget_is_refused_before_it_is_sent() -> None:
    transport = FakeTransport()
    # A quota of one: a late read that went on into the pipeline would use it up.
    config = make_config({"quota": {"per_day": 1}})
    pipelines = Pipelines(config, Emitter(), transport=transport, store=MemoryStore())
    exchange = exchange_for(config, "get_item", budget_s=-0.001)
    request = request_for(exchange, item_id="x")
    assert not request.is_write
    with pytest.raises(DeadlineExceeded):
        await pipelines.send(exchange)(request, exchange)
    fresh = exchange_for(config, "get_item")
    assert (await pipelines.send(fresh)(request, fresh)).status == 200
    assert len(transport.sent) == 1  # only the read within its budget went out
    await pipelines.close()


async def test_an_open_breaker_ends_the_retrying() -> None:
    transport = FakeTransport(status(503))
    config = make_config(
        {**ALL, "retry": {"attempts": 10, "backoff_s": 0, "max_backoff_s": 0}},
        {"get_item": {"budget_s": 5}},
    )
    async with make_runtime(config, transport) as rt:
        result = await rt.call_tool("get_item", {"item_id": "x"}, "c-1")
    assert result.error is not None and result.error.code == "circuit_open"
    assert result.meta["attempts"] == 3 == len(transport.sent)


async def test_the_store_comes_from_the_config_and_closes_with_the_runtime(
    tmp_path: Path,
) -> None:
    config = load_config_text(yaml.safe_dump({**BASE, "state": f"sqlite:///{tmp_path}/state.db"}))
    pipelines = Pipelines(config, Emitter(), transport=FakeTransport())
    assert pipelines.store.backend == "sqlite"
    await pipelines.store.set("k", b"v")
    await pipelines.close()
    assert (tmp_path / "state.db").exists()
    default = Pipelines(make_config(), Emitter(), transport=FakeTransport())
    assert default.store.backend == "memory"
    await default.close()
