"""`state: {fast, durable}` from a config: opened as a split store, checked where it is wrong,
and used by a real runtime whose payment ledger lands in PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchbay import ToolRuntime
from patchbay.spec import load_config_text
from patchbay.state import (
    FallbackStore,
    MemoryStore,
    PostgresStore,
    RedisStore,
    SplitStore,
    SQLiteStore,
    open_store,
)
from patchbay.testing import BillingServer

from .support import EXAMPLE_DIR, PAYMENT, billing_yaml


async def test_open_store_builds_a_split_store_from_the_config(tmp_path: Path) -> None:
    config = load_config_text(
        billing_yaml(state={"fast": "memory", "durable": f"sqlite:///{tmp_path}/state.db"}),
        base_dir=EXAMPLE_DIR,
        env={"BILLING_URL": "http://127.0.0.1:9", "BILLING_API_KEY": "k"},
    )
    store = open_store(config.state)
    try:
        assert isinstance(store, SplitStore) and store.backend == "split"
        assert isinstance(store.fast, MemoryStore) and isinstance(store.durable, SQLiteStore)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("state", "where", "words"),
    [
        ({"fast": "redis://", "durable": "memory"}, "state.fast", "unknown state store"),
        ({"fast": "memory", "durable": "mongo://db"}, "state.durable", "postgresql://"),
        ({"fast": "memory"}, "state.durable", "required"),
        ({"fast": "memory", "durable": "memory", "slow": "x"}, "state.slow", "unknown key"),
    ],
)
def test_a_bad_state_mapping_is_refused_where_it_is_wrong(
    state: dict[str, str], where: str, words: str
) -> None:
    env = {"BILLING_URL": "http://127.0.0.1:9", "BILLING_API_KEY": "k"}
    with pytest.raises(Exception) as info:
        load_config_text(billing_yaml(state=state), base_dir=EXAMPLE_DIR, env=env)
    text = str(info.value)
    assert where in text and words in text.lower(), text


def test_a_password_in_a_bad_state_url_is_not_repeated() -> None:
    env = {"BILLING_URL": "http://127.0.0.1:9", "BILLING_API_KEY": "k"}
    with pytest.raises(Exception) as info:
        load_config_text(
            billing_yaml(state={"fast": "memory", "durable": "mongo://u:s3cret@db/x"}),
            base_dir=EXAMPLE_DIR,
            env=env,
        )
    assert "s3cret" not in str(info.value)


@pytest.mark.redis
async def test_a_payment_keeps_its_ledger_and_outbox_in_postgresql(
    redis_url: str,
    redis_key_prefix: str,
    postgres_url: str,
    postgres_key_prefix: str,
    billing: BillingServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real runtime over Redis beside PostgreSQL: the idempotency ledger is in PostgreSQL."""
    monkeypatch.setenv("BILLING_API_KEY", billing.api_key)
    text = billing_yaml(state={"fast": redis_url, "durable": postgres_url})
    config = load_config_text(
        text,
        base_dir=EXAMPLE_DIR,
        env={"BILLING_URL": billing.url, "BILLING_API_KEY": billing.api_key},
    )
    fast = FallbackStore(RedisStore(redis_url, prefix=redis_key_prefix), MemoryStore())
    durable = PostgresStore(postgres_url, prefix=postgres_key_prefix)
    store = SplitStore(fast, durable)
    async with ToolRuntime(config, sinks=[], store=store) as rt:
        first = await rt.call_tool("pay_invoice", PAYMENT, "call-split")
        again = await rt.call_tool("pay_invoice", PAYMENT, "call-split")
    assert first.ok and again.ok and again.meta.get("deduplicated")
    probe = PostgresStore(postgres_url, prefix=postgres_key_prefix)
    try:
        rows = await probe._fetch(
            "SELECT key FROM patchbay_state WHERE starts_with(key, $1)", postgres_key_prefix
        )
    finally:
        await probe.close()
    assert any(r["key"].startswith(postgres_key_prefix + "idem:") for r in rows), rows
