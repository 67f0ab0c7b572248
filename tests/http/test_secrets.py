"""Secret references: resolution, caching, providers, and values that never print."""

from __future__ import annotations

import asyncio
import logging
import pickle
from pathlib import Path

import pytest

from patchbay._errors import SecretError
from patchbay.http._secrets import Secret, SecretResolver, known_secret_values

VALUE = "s3cr3t-value-never-printed"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingProvider:
    """A pluggable provider (as a vault client would be) that counts its lookups."""

    def __init__(self, values: dict[str, str], delay_s: float = 0.0) -> None:
        self.values = values
        self.delay_s = delay_s
        self.calls = 0

    async def resolve(self, name: str) -> str:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        try:
            return self.values[name]
        except KeyError:
            raise SecretError(f"no vault secret {name}") from None


class LeakyProvider:
    async def resolve(self, name: str) -> str:
        raise RuntimeError(f"parse failure near {VALUE}")


def test_secret_never_prints_its_value() -> None:
    secret = Secret(VALUE)
    assert repr(secret) == "Secret('***')"
    assert str(secret) == "Secret('***')"
    assert f"{secret}" == "Secret('***')"
    assert VALUE not in repr([secret, {"k": secret}])
    assert secret.reveal() == VALUE
    assert secret.matches(VALUE) and not secret.matches(VALUE + "x")
    assert secret == Secret(VALUE) and secret != Secret("other")
    with pytest.raises(TypeError):
        pickle.dumps(secret)


async def test_env_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PB_TEST_KEY", VALUE)
    secret = await SecretResolver().resolve("env:PB_TEST_KEY")
    assert secret.reveal() == VALUE
    assert VALUE in SecretResolver().known_values()
    assert VALUE in known_secret_values()


async def test_missing_env_var_names_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PB_TEST_ABSENT", raising=False)
    with pytest.raises(SecretError, match="env:PB_TEST_ABSENT"):
        await SecretResolver().resolve("env:PB_TEST_ABSENT")


async def test_empty_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PB_TEST_EMPTY", "")
    with pytest.raises(SecretError, match="env:PB_TEST_EMPTY is empty"):
        await SecretResolver().resolve("env:PB_TEST_EMPTY")


async def test_file_reference_strips_one_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(VALUE + "\n\n")
    (tmp_path / "crlf").write_bytes(VALUE.encode() + b"\r\n")
    resolver = SecretResolver(base_dir=tmp_path)
    assert (await resolver.resolve(f"file:{tmp_path / 'key'}")).reveal() == VALUE + "\n"
    assert (await resolver.resolve("file:crlf")).reveal() == VALUE  # relative to base_dir


async def test_unreadable_file_names_the_reference_only(tmp_path: Path) -> None:
    with pytest.raises(SecretError) as info:
        await SecretResolver(base_dir=tmp_path).resolve("file:missing.txt")
    assert "file:missing.txt" in str(info.value)
    assert info.value.__cause__ is None


def test_a_literal_is_refused_without_echoing_it() -> None:
    for literal in (VALUE, "sk_live_abc:def", "has space:x"):
        with pytest.raises(SecretError) as info:
            SecretResolver.check(literal)
        assert str(info.value) == (
            "secrets must be references like env:NAME or file:PATH; "
            "never put a secret in the config"
        )


async def test_unknown_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SecretError, match="unknown secret scheme 'vault'") as info:
        await SecretResolver().resolve("vault:billing/key")
    assert "env, file" in str(info.value)


async def test_registered_provider_shares_one_lookup_among_concurrent_callers() -> None:
    provider = CountingProvider({"billing/key": VALUE}, delay_s=0.05)
    resolver = SecretResolver()
    resolver.register("vault", provider)
    secrets = await asyncio.gather(*(resolver.resolve("vault:billing/key") for _ in range(20)))
    assert {s.reveal() for s in secrets} == {VALUE}
    assert provider.calls == 1
    await resolver.resolve("vault:billing/key")
    assert provider.calls == 1
    with pytest.raises(SecretError, match="no vault secret other"):
        await resolver.resolve("vault:other")


async def test_a_provider_failure_never_carries_the_value() -> None:
    resolver = SecretResolver()
    resolver.register("leaky", LeakyProvider())
    with pytest.raises(SecretError) as info:
        await resolver.resolve("leaky:x")
    assert VALUE not in f"{info.value} {info.value!r}"
    assert "leaky:x" in str(info.value) and "RuntimeError" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_cache_lives_until_ttl_or_invalidation(tmp_path: Path) -> None:
    path = tmp_path / "rotating"
    path.write_text("first-value")
    clock = Clock()
    resolver = SecretResolver(base_dir=tmp_path, ttl_s=60, clock=clock)
    assert (await resolver.resolve("file:rotating")).reveal() == "first-value"
    path.write_text("second-value")
    clock.now += 59
    assert (await resolver.resolve("file:rotating")).reveal() == "first-value"
    clock.now += 2
    # past the TTL the old value is served while one refresh runs; `fresh` waits for it
    assert (await resolver.resolve("file:rotating")).reveal() == "first-value"
    assert (await resolver.resolve("file:rotating", fresh=True)).reveal() == "second-value"
    assert (await resolver.resolve("file:rotating")).reveal() == "second-value"
    path.write_text("third-value")
    resolver.invalidate("file:rotating")
    assert (await resolver.resolve("file:rotating")).reveal() == "third-value"
    assert {"first-value", "second-value", "third-value"} <= resolver.known_values()


async def test_without_ttl_a_value_is_cached_for_good(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text("one-value")
    resolver = SecretResolver(base_dir=tmp_path)
    first = await resolver.resolve("file:k")
    path.write_text("two-value")
    assert await resolver.resolve("file:k") is first


async def test_errors_and_logs_never_show_a_value(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PB_TEST_LOGGED", VALUE)
    secret = await SecretResolver().resolve("env:PB_TEST_LOGGED")
    logging.getLogger("patchbay.test").info("resolved %s %r", secret, secret)
    assert "Secret('***')" in caplog.text
    assert VALUE not in caplog.text
