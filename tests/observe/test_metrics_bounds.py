"""Metric labels stay bounded whatever names callers make up."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from patchbay.observe import Event, PrometheusSink
from patchbay.observe._metrics import MAX_SERIES


def _series(sink: PrometheusSink, name: str) -> dict[frozenset[tuple[str, str]], float]:
    found: dict[frozenset[tuple[str, str]], float] = {}
    for family in text_string_to_metric_families(sink.exposition().decode()):
        for s in family.samples:
            if s.name == name:
                found[frozenset(s.labels.items())] = s.value
    return found


def test_tool_names_outside_the_config_are_one_label() -> None:
    sink = PrometheusSink(tools={"lookup"})
    sink.emit(Event("tool_call", "lookup", outcome="ok", latency_ms=2.0))
    for i in range(100):
        sink.emit(Event("tool_call", f"guess_{i}", outcome="invalid_arguments", latency_ms=1.0))
        sink.emit(Event("policy", f"guess_{i}", integration="billing", outcome="retry"))
        sink.emit(Event("background", f"guess_{i}", outcome="ok"))
    calls = _series(sink, "patchbay_tool_calls_total")
    assert calls == {
        frozenset({("tool", "lookup"), ("outcome", "ok")}): 1.0,
        frozenset({("tool", "unknown"), ("outcome", "invalid_arguments")}): 100.0,
    }
    assert b"guess_" not in sink.exposition()


def test_tenants_outside_the_config_are_other() -> None:
    sink = PrometheusSink(tenants={"acme"})
    assert [sink.tenant(t) for t in ("acme", "evil-corp", None)] == ["acme", "other", ""]


def test_a_family_takes_no_new_label_sets_past_its_bound() -> None:
    sink = PrometheusSink()  # no config: names are kept as they come, up to the bound
    extra = 50
    for i in range(MAX_SERIES + extra):
        sink.emit(Event("tool_call", f"t{i}", outcome="ok"))
    sink.emit(Event("tool_call", "t0", outcome="ok"))  # a kept set still counts as itself
    calls = _series(sink, "patchbay_tool_calls_total")
    assert len(calls) == MAX_SERIES + 1
    assert calls[frozenset({("tool", "other"), ("outcome", "other")})] == extra
    assert calls[frozenset({("tool", "t0"), ("outcome", "ok")})] == 2.0
    latency = sink.tool_latency
    for i in range(MAX_SERIES + extra):
        latency.observe(0.01, f"x{i}")
    gauge = sink.breaker_state
    for i in range(MAX_SERIES + extra):
        gauge.set(1, "billing", f"GET /p{i}")
    text = sink.exposition()
    assert text.count(b"patchbay_tool_call_seconds_count{") <= MAX_SERIES + 1
    assert text.count(b"patchbay_breaker_state{") <= MAX_SERIES + 1
