"""`observe:` in patchbay.yaml turns sinks on for `call`, `serve` and `mcp`, without Python."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from typer.testing import CliRunner

from patchbay.cli import app
from patchbay.observe._chain import verify
from patchbay.observe._configured import ConfiguredSinks
from patchbay.observe._events import Event
from patchbay.spec import load_config_text
from patchbay.testing import BillingServer

from .observe_support import (
    CLI,
    EXAMPLE_DIR,
    OtlpReceiver,
    child_env,
    http,
    json_lines,
    serving,
    write_config,
)

AUDIT_KEY = "audit-key-0f3e9d"
COLLECTOR_KEY = "collector-key-77b1e0"
OPS_TOKEN = "ops-token-51c2aa"
EVERY_SINK = """
  log: {level: info}
  jsonl: events.jsonl
  audit: {path: audit/audit.jsonl, key: env:AUDIT_KEY}
  prometheus: {path: metrics/patchbay.prom}
"""
GATEWAY = "gateway:\n  auth: {bearer: env:OPS_TOKEN}\n"
LOOKUP = "lookup_customer_invoices"
OK_SAMPLE = f'patchbay_tool_calls_total{{outcome="ok",tool="{LOOKUP}"}}'


@pytest.fixture(scope="module")
def billing() -> Iterator[BillingServer]:
    with BillingServer(in_process=True) as server:
        yield server


def _env(billing: BillingServer) -> dict[str, str]:
    return child_env(
        BILLING_URL=billing.url,
        BILLING_API_KEY=billing.api_key,
        AUDIT_KEY=AUDIT_KEY,
        OPS_TOKEN=OPS_TOKEN,
    )


def _sample(exposition: str, name: str) -> float:
    """The value of one sample line of a Prometheus exposition."""
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the metrics:\n{exposition}")


def _assert_observed(directory: Path, calls: int) -> None:
    """The JSON lines, the audit trail and the metrics file each saw `calls` lookups."""
    events = json_lines(directory / "events.jsonl")
    finished = [e for e in events if e["kind"] == "tool_call" and e["tool"] == LOOKUP]
    assert [e["outcome"] for e in finished] == ["ok"] * calls, events
    assert any(e["kind"] == "attempt" and e["path"] == "/customers/search" for e in events)
    audit = directory / "audit" / "audit.jsonl"
    lines = json_lines(audit)
    assert [(line["tool"], line["outcome"]) for line in lines] == [(LOOKUP, "ok")] * calls
    assert verify([audit], AUDIT_KEY.encode()) == (calls, None)  # chained with the key
    metrics = (directory / "metrics" / "patchbay.prom").read_text()
    assert _sample(metrics, OK_SAMPLE) == calls


def test_call_writes_every_sink_the_config_names(billing: BillingServer, tmp_path: Path) -> None:
    config = write_config(tmp_path, EVERY_SINK)
    args = json.dumps({"phone": "555-123-4567"})
    done = subprocess.run(
        [*CLI, "call", "-c", str(config), LOOKUP, "--args", args],
        cwd=tmp_path,
        env=_env(billing),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    _assert_observed(tmp_path, calls=1)
    # log.level: info sends the events to stderr through the `patchbay.events` logger.
    logged = [line for line in done.stderr.splitlines() if "patchbay.events" in line]
    assert any('"kind":"tool_call"' in line and LOOKUP in line for line in logged), done.stderr


def test_serve_writes_every_sink_and_serves_the_same_metrics(
    billing: BillingServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path, EVERY_SINK, GATEWAY)
    bearer = {"Authorization": f"Bearer {OPS_TOKEN}"}
    body = {"arguments": {"phone": "555-123-4567"}, "call": {"id": "c-serve"}}
    with serving(config, _env(billing)) as (url, stderr):
        for _ in range(2):
            status, answer = http("POST", f"{url}/tools/{LOOKUP}", body, bearer)
            assert status == 200 and json.loads(answer)["ok"] is True, answer
        status, exposition = http("GET", f"{url}/metrics", headers=bearer)
        assert status == 200
        assert _sample(exposition.decode(), OK_SAMPLE) == 2
    _assert_observed(tmp_path, calls=2)  # the metrics file is written again at shutdown
    assert "patchbay.events" in stderr[0] and '"kind":"tool_call"' in stderr[0]


async def test_mcp_writes_every_sink(billing: BillingServer, tmp_path: Path) -> None:
    run = "import sys; sys.argv[0] = 'patchbay'; from patchbay.cli import main; sys.exit(main())"
    async with OtlpReceiver() as receiver:
        config = write_config(tmp_path, EVERY_SINK + _otlp(receiver.url))
        params = StdioServerParameters(
            command=sys.executable,
            args=["-c", run, "mcp", "-c", str(config)],
            env={**_env(billing), "COLLECTOR_KEY": COLLECTOR_KEY},
            cwd=tmp_path,
        )
        with (tmp_path / "stderr.txt").open("w") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                answer = await session.call_tool(LOOKUP, {"phone": "555-123-4567"})
                assert answer.structured_content is not None
                assert answer.structured_content["ok"] is True
        _assert_traced(receiver, lookups=1)
    _assert_observed(tmp_path, calls=1)
    logged = (tmp_path / "stderr.txt").read_text()
    assert "patchbay.events" in logged and '"kind":"tool_call"' in logged, logged


def _otlp(url: str) -> str:
    return f"  otlp: {{endpoint: '{url}', headers: {{x-collector-key: env:COLLECTOR_KEY}}}}"


def _assert_traced(receiver: OtlpReceiver, lookups: int) -> None:
    """The collector got the tool calls' spans, with the key from the config's reference."""
    names = receiver.span_names()
    assert names.count(f"execute_tool {LOOKUP}") == lookups, names
    assert "GET /customers/search" in names, names
    keys = {h.get("x-collector-key") for path, h, _ in receiver.exports if path == "/v1/traces"}
    assert keys == {COLLECTOR_KEY}


async def test_call_exports_traces_to_the_configured_collector(
    billing: BillingServer, tmp_path: Path
) -> None:
    async with OtlpReceiver() as receiver:
        config = write_config(tmp_path, _otlp(receiver.url))
        proc = await asyncio.create_subprocess_exec(
            *CLI, "call", "-c", str(config), LOOKUP, "--args", '{"phone": "555-123-4567"}',
            cwd=tmp_path,
            env={**_env(billing), "COLLECTOR_KEY": COLLECTOR_KEY},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        assert json.loads(out)["ok"] is True
        _assert_traced(receiver, lookups=1)  # flushed before the process exits


async def test_serve_exports_traces_to_the_configured_collector(
    billing: BillingServer, tmp_path: Path
) -> None:
    async with OtlpReceiver() as receiver:
        config = write_config(tmp_path, _otlp(receiver.url), GATEWAY)
        env = {**_env(billing), "COLLECTOR_KEY": COLLECTOR_KEY}
        bearer = {"Authorization": f"Bearer {OPS_TOKEN}"}
        body = {"arguments": {"phone": "555-123-4567"}, "call": {"id": "c-otlp"}}

        def session() -> None:  # in a thread: the receiver answers on this event loop
            with serving(config, env) as (url, _):
                status, answer = http("POST", f"{url}/tools/{LOOKUP}", body, bearer)
                assert status == 200, answer

        await asyncio.to_thread(session)
        _assert_traced(receiver, lookups=1)


@pytest.mark.parametrize(
    ("block", "words"),
    [
        ("  jsonl: 3", "observe.jsonl: expected a file path or a mapping"),
        ("  jsonl: {paht: x.jsonl}", "unknown key 'paht' (did you mean 'path'?)"),
        ("  prometheus: yes-please", "observe.prometheus: expected true, false or a mapping"),
        ("  prometheus: {path: m.prom, interval_s: 0}", "interval_s: must be greater than 0"),
        ("  otlp: {endpoint: 'localhost:4318'}", "observe.otlp.endpoint: expected the collector"),
        ("  otlp: {endpoint: 'http://127.0.0.1:4318', traces: false}", "sends nothing"),
        (
            "  otlp: {endpoint: 'http://127.0.0.1:4318', headers: {x-key: literal-key-value}}",
            "observe.otlp.headers.x-key: must be a secret reference",
        ),
        (
            "  otlp: {endpoint: 'http://127.0.0.1:4318', headers: {x-key: env:NOT_SET_ANYWHERE}}",
            "observe.otlp.headers.x-key",
        ),
        ("  audit: {path: a.jsonl, key: env:NOT_SET_ANYWHERE}", "observe.audit.key"),
        (
            "  otlp: {endpoint: 'http://127.0.0.1:4318', headers: {'x key': env:BILLING_API_KEY}}",
            "header 'x key' is not a valid HTTP header name",
        ),
        (
            "  otlp: {endpoint: 'http://127.0.0.1:4318', headers: {Host: env:BILLING_API_KEY}}",
            "header 'Host' is set by the exporter itself",
        ),
    ],
)
def test_validate_refuses_a_bad_observe_block(tmp_path: Path, block: str, words: str) -> None:
    config = write_config(tmp_path, block)
    result = CliRunner().invoke(
        app, ["validate", "-c", str(config)], env={"BILLING_API_KEY": "k", "NOT_SET_ANYWHERE": None}
    )
    assert result.exit_code == 2, result.output
    assert words in result.stderr
    assert "literal-key-value" not in result.output  # a mistaken secret is never echoed
    assert "Traceback" not in result.output


def test_otlp_without_the_otel_extra_says_what_to_install(tmp_path: Path) -> None:
    config = write_config(tmp_path, "  otlp: {endpoint: 'http://127.0.0.1:4318'}")
    # A Python without the SDK and the OTLP exporter, as without patchbay[otel] (the API
    # itself comes with the MCP SDK).
    run = (
        "import sys; sys.modules['opentelemetry.sdk'] = None; "
        "sys.modules['opentelemetry.exporter'] = None; sys.argv[0] = 'patchbay'; "
        "from patchbay.cli import main; sys.exit(main())"
    )
    for command in ("validate", "serve", "mcp"):
        done = subprocess.run(
            [sys.executable, "-c", run, command, "-c", str(config)],
            env=child_env(BILLING_API_KEY="k"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, (command, done.stderr)
        assert "pip install 'patchbay[otel]'" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_validate_accepts_every_sink(tmp_path: Path) -> None:
    block = EVERY_SINK + "  otlp: {endpoint: 'http://127.0.0.1:4318', headers: {x-key: env:K}}"
    config = write_config(tmp_path, block)
    env = {"BILLING_API_KEY": "k", "AUDIT_KEY": "a", "K": "v"}
    result = CliRunner().invoke(app, ["validate", "-c", str(config)], env=env)
    assert result.exit_code == 0, result.output


def _sinks(tmp_path: Path, observe: str) -> ConfiguredSinks:
    text = f"version: 1\ntools: {{}}\nobserve:\n{observe}\n"
    return ConfiguredSinks.build(load_config_text(text, base_dir=tmp_path), logs_events=True)


def test_prometheus_true_keeps_metrics_without_a_file_and_false_keeps_none(
    tmp_path: Path,
) -> None:
    on = _sinks(tmp_path, "  prometheus: true")
    assert on.metrics is not None and on.metrics in on.sinks
    on.metrics.emit(Event(kind="tool_call", tool="t", outcome="ok"))
    on.close()
    assert list(tmp_path.iterdir()) == []  # no path: nothing written
    off = _sinks(tmp_path, "  prometheus: false\n  log: {level: debug}")
    # logs_events: the runtime logs events already, so no second logging sink either
    assert off.metrics is None and off.sinks == []


def test_the_metrics_file_is_rewritten_at_most_every_interval(tmp_path: Path) -> None:
    sinks = _sinks(tmp_path, "  prometheus: {path: m.prom, interval_s: 3600}")
    sample = 'patchbay_tool_calls_total{outcome="ok",tool="unknown"}'  # not a config tool
    for sink in sinks.sinks:
        sink.emit(Event(kind="tool_call", tool="t", outcome="ok"))
    assert _sample((tmp_path / "m.prom").read_text(), sample) == 1  # the first call writes
    for sink in sinks.sinks:
        sink.emit(Event(kind="tool_call", tool="t", outcome="ok"))
    assert _sample((tmp_path / "m.prom").read_text(), sample) == 1  # within the interval
    sinks.close()
    assert _sample((tmp_path / "m.prom").read_text(), sample) == 2  # and at close
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.prom"]  # no temporary file left


def test_a_runtime_given_no_exporter_says_otlp_sends_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    otlp = "  otlp: {endpoint: 'http://127.0.0.1:4318'}"
    config = load_config_text(f"version: 1\ntools: {{}}\nobserve:\n{otlp}\n", base_dir=tmp_path)
    with caplog.at_level("WARNING", logger="patchbay.observe"):
        ConfiguredSinks.build(config, logs_events=True, traced=True).close()
        assert caplog.records == []
        ConfiguredSinks.build(config, logs_events=True).close()
    assert "observe.otlp" in caplog.text and "otel=" in caplog.text


def test_test_command_writes_events_and_the_audit_trail(tmp_path: Path) -> None:
    observe = "  jsonl: events.jsonl\n  audit: {path: audit/audit.jsonl, key: env:AUDIT_KEY}"
    config = write_config(tmp_path, observe)
    scenarios = str(EXAMPLE_DIR / "scenarios.yaml")
    env = {"BILLING_API_KEY": "any", "AUDIT_KEY": AUDIT_KEY, "PATCHBAY_STATE": "memory"}
    result = CliRunner().invoke(
        app, ["test", scenarios, "-c", str(config), "--only", "pay_bill"], env=env
    )
    assert result.exit_code == 0, result.output
    finished = [e for e in json_lines(tmp_path / "events.jsonl") if e["kind"] == "tool_call"]
    assert [e["tool"] for e in finished] == [LOOKUP, "create_payment"]
    audit = tmp_path / "audit" / "audit.jsonl"
    assert verify([audit], AUDIT_KEY.encode()) == (2, None)


def test_a_file_observe_cannot_write_stops_the_command_at_start(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    config = write_config(tmp_path, "  jsonl: blocker/events.jsonl")
    result = CliRunner().invoke(
        app, ["call", "-c", str(config), "get_customer"], env={"BILLING_API_KEY": "k"}
    )
    assert result.exit_code == 2, result.output
    assert "observe.jsonl.path: cannot create" in result.stderr
    assert "Traceback" not in result.output


def test_call_says_prometheus_without_a_path_publishes_nothing(
    billing: BillingServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path, "  prometheus: true")
    env = {"BILLING_URL": billing.url, "BILLING_API_KEY": billing.api_key}
    args = ["call", "-c", str(config), "get_customer", "--args", '{"customer_id": "cus_8F2kLq"}']
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True
    assert "observe.prometheus: this command serves no /metrics" in result.stderr


def test_a_collector_header_value_that_would_split_the_request_stops_the_command(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, _otlp("http://127.0.0.1:4318"))
    smuggled = "k3y\r\nX-Smuggled: 1"
    args = ["--args", '{"phone": "555-123-4567"}', "-c", str(config)]
    result = CliRunner().invoke(
        app,
        ["call", "lookup_customer_invoices", *args],
        env={"BILLING_API_KEY": "k", "COLLECTOR_KEY": smuggled},
    )
    assert result.exit_code == 2, result.output
    assert "x-collector-key" in result.stderr and "control character" in result.stderr
    assert "X-Smuggled" not in result.output and "k3y" not in result.output
    assert "Traceback" not in result.output
