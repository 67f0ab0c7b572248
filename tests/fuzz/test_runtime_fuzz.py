"""Runtime fuzz: adversarial argument sets through ToolRuntime.call_tool, requests recorded.

The billing example and a synthetic config with every parameter kind run through a runtime
whose transport answers at once and records what it was sent. Counted, and all must be 0:
call_tool raising, results that are not the envelope (or whose LLM text is over max_chars),
requests sent for a result that says invalid_arguments, requests off their declared template
(or with control characters in headers), and values an independent reading of the schema calls
invalid that still got an answer or a request. PATCHBAY_FUZZ_RUNTIME sets the number of cases
(`make fuzz`: 100,000; default a short form for `make test`).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from patchbay import CallContext, ToolResult, ToolRuntime
from patchbay.spec import Config, Tool, load_config, load_config_text

from .support import (
    COUNTS,
    RUNTIME_CASES,
    SEED,
    RecordingTransport,
    Tally,
    definitely_invalid,
    describe,
    request_problems,
    short,
    unsendable,
)
from .values import ANY, ArgumentMaker

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "billing" / "patchbay.yaml"

SYNTHETIC = """
version: 1
integrations:
  svc:
    base_url: "http://127.0.0.1:9/api/v1"
    retry: {attempts: 1}
tools:
  get_thing:
    integration: svc
    description: Fetch a thing by kind, name and code.
    parameters:
      kind: {type: string, enum: [book, film, song]}
      name: {type: string, min_length: 1, max_length: 64}
      code: {type: string, pattern: "^[A-Z]{3}-[0-9]{1,6}$"}
      note: {type: string, required: false}
      limit: {type: integer, minimum: 1, maximum: 50, default: 10}
    request:
      method: GET
      path: "/things/{kind}/{name}/{code}"
      query: {limit: "{args.limit}"}
      headers: {X-Note: "{args.note}"}
  find_person:
    integration: svc
    description: Find a person by phone or email.
    parameters:
      phone: {type: string, format: e164}
      email: {type: string, format: email}
      born: {type: string, format: date, required: false}
      site: {type: string, format: uri, required: false}
    require: {one_of: [phone, email]}
    request:
      method: GET
      path: /people/search
      query: {phone: "{args.phone}", email: "{args.email}", born: "{args.born}",
              site: "{args.site}"}
  update_thing:
    integration: svc
    description: Update a thing.
    parameters:
      id: {type: string}
      price: {type: number, minimum: 0, maximum: 10000}
      count: {type: integer, minimum: -5, maximum: 5}
      active: {type: boolean}
      tags: {type: array, items: {type: string, pattern: "^[a-z]+$"}, max_items: 5}
      sizes: {type: array, items: {type: integer, minimum: 0, maximum: 99}, required: false}
      attrs: {type: object, required: false}
      mode: {type: string, enum: [fast, safe], default: safe}
    rules:
      - {check: "args.count != `0` || args.active", message: "a count of zero needs active"}
    request:
      method: PATCH
      path: "/things/{id}"
      headers: {X-Mode: "{args.mode}", X-Call: "{call.id}"}
      body: {price: "{args.price}", count: "{args.count}", active: "{args.active}",
             tags: "{args.tags}", sizes: "{args.sizes}", attrs: "{args.attrs}"}
    idempotency: {key: "upd_{call.id}_{args.id}"}
"""

VALID: dict[str, Any] = {
    "customer_id": "cus_8F2kLq",
    "phone": "+15551234567",
    "email": "jamie.patel@example.com",
    "invoice_id": "inv_1001",
    "amount": 100,
    "payment_method_id": "pm_card_visa4242",
    "kind": "book",
    "name": "dune",
    "code": "ABC-123",
    "note": "first edition",
    "limit": 5,
    "born": "1990-04-01",
    "site": "https://example.com/me",
    "id": "thing_1",
    "price": 12.5,
    "count": 2,
    "active": True,
    "tags": ["red", "blue"],
    "sizes": [1, 2],
    "attrs": {"colour": "red"},
    "mode": "fast",
}
ENVELOPE = {"ok", "tool", "call_id", "result", "error", "say", "meta"}
CODES = {
    "invalid_arguments", "not_found", "unauthorized", "conflict", "client_error",
    "rate_limited", "timeout", "upstream_unavailable", "circuit_open", "quota_exceeded",
    "internal", "pending",
}  # fmt: skip
STATE = {"customer_id": "cus_8F2kLq", "open_invoice_amount": 24700}
_TEXT = [(label, value) for label, value in ANY if isinstance(value, str)]
# What stored call state must survive: values no encoder writes as they are.
_STRUCTURAL = [
    (label, value)
    for label, value in ANY
    if any(word in label for word in ("deep", "huge", "surrogate", "nan", "inf", "object_"))
]


async def _no_sleep(_seconds: float) -> None:
    """Backoff without waiting: every answer is canned, nothing is worth waiting for."""


def _valid(name: str) -> Any:
    return VALID[name]


def envelope_problem(result: Any, tool: str, call_id: str | None, max_chars: int) -> str | None:
    """How `result` breaks the tool result contract, or None."""
    if not isinstance(result, ToolResult):
        return f"not a ToolResult: {type(result).__name__}"
    try:
        data = json.loads(result.to_json())
        llm = result.llm_text()
    except Exception as exc:
        return f"not encodable: {type(exc).__name__}"
    if not isinstance(data, dict) or set(data) != ENVELOPE:
        return "keys"
    if not _same(data["tool"], tool) or not isinstance(data["ok"], bool):
        return "header"
    if call_id is not None and not _same(data["call_id"], call_id):
        return "call_id"
    if not isinstance(data["meta"], dict):
        return "meta"
    error = data["error"]
    if data["ok"]:
        if error is not None:
            return "ok with an error"
        if len(json.dumps(data["result"], ensure_ascii=False)) > max_chars:
            return "result over max_chars"
        return None
    if not isinstance(error, dict) or error.get("code") not in CODES:
        return f"error code {error.get('code') if isinstance(error, dict) else error!r}"
    if not isinstance(error.get("message"), str) or not error["message"]:
        return "error message"
    if not isinstance(error.get("retryable"), bool) or not isinstance(error.get("fields"), dict):
        return "error fields"
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in error["fields"].items()):
        return "error fields not text"
    if len(llm) > max_chars:
        return "llm text over max_chars"
    return None


def _same(echoed: Any, sent: str) -> bool:
    """Whether the envelope names what was sent (text with lone surrogates cannot be equal)."""
    try:
        sent.encode()
    except UnicodeEncodeError:
        return isinstance(echoed, str)
    return bool(echoed == sent)


class _ErrorLogs(logging.Handler):
    """Counts error logs (exceptions the runtime caught and logged), keeping a few messages."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        # The runtime logs the traceback inside the message: keep its head and last line.
        lines = record.getMessage().splitlines()
        seen = f"{lines[0][:80]} | {lines[-1].strip()[:160]}"
        if seen not in self.first and len(self.first) < 20:
            self.first.append(seen)


def _configs() -> list[Config]:
    example = load_config(str(EXAMPLE), env={"BILLING_URL": "http://127.0.0.1:9"})
    return [example, load_config_text(SYNTHETIC)]


def _unknown(name: str) -> Tool:
    # Only its name reaches the runtime; the rest stands in for "no such tool" in the loop.
    return Tool(name=name, description="-", builtin="callback_request")


def _schedule(rng: random.Random, tools: list[tuple[int, Tool]]) -> Iterator[tuple[int, Tool]]:
    for n in range(RUNTIME_CASES):
        if rng.random() < 0.01:
            yield n % 2, _unknown(rng.choice(["nope", "", "get_customer ", "\ud800", "a" * 10_000]))
        else:
            yield tools[n % len(tools)]


def _call(rng: random.Random, n: int) -> tuple[CallContext | None, str]:
    draw = rng.random()
    if draw < 0.15:
        return None, "no_call"
    if draw < 0.25:
        label, value = rng.choice(_TEXT)
        return CallContext(id=value, caller="+15551234567", state=dict(STATE)), f"call_id={label}"
    if draw < 0.3:
        # State arrives from outside too (a gateway's POST /calls/{id}/start body).
        label, value = rng.choice(ANY if rng.random() < 0.5 else _STRUCTURAL)
        key = rng.choice(["customer_id", "open_invoice_amount", "\ud800"])
        state = {**STATE, key: value}
        # A call of its own: the state must not linger into other cases' reproducers.
        return CallContext(id=f"s-{n}", state=state), f"state.{short(key)}={label}"
    return CallContext(id=f"c-{n % 64}", caller="+15551234567", state=dict(STATE)), "call"


@pytest.mark.timeout(max(120, RUNTIME_CASES // 200))
async def test_runtime_fuzz(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The example's api_key auth reads env:BILLING_API_KEY, as it does in production.
    monkeypatch.setenv("BILLING_API_KEY", "fuzz-key-0000")
    rng = random.Random(SEED)
    tally = Tally("runtime fuzz")
    errors = _ErrorLogs()
    logging.getLogger("patchbay").addHandler(errors)
    configs = _configs()
    transports = [RecordingTransport() for _ in configs]
    runtimes = [
        ToolRuntime(cfg, transport=t, sinks=[], sleep=_no_sleep)
        for cfg, t in zip(configs, transports, strict=True)
    ]
    bases = [
        {n: urlsplit(i.base_url).path.rstrip("/") for n, i in c.integrations.items()}
        for c in configs
    ]
    tools = [(k, t) for k, cfg in enumerate(configs) for t in cfg.tools.values()]
    makers = {(k, t.name): ArgumentMaker(rng, dict(t.parameters), _valid) for k, t in tools}
    try:
        for n, (k, tool) in enumerate(_schedule(rng, tools)):
            rt, transport = runtimes[k], transports[k]
            maker = makers.get((k, tool.name))
            args, labels = maker.make() if maker else ({}, {})
            call, call_label = _call(rng, n)
            repro = describe(tool.name, labels, f" [{call_label}]")
            before = len(transport.requests)
            tally.cases += 1
            try:
                result = await rt.call_tool(tool.name, args, call)
            except Exception as exc:
                tally.fail(
                    "unhandled_exceptions", f"{short(tool.name)} {type(exc).__name__}", repro
                )
                continue
            sent = transport.requests[before:]
            tally.requests += len(sent)
            limit = tool.response.max_chars
            problem = envelope_problem(result, tool.name, call.id if call else None, limit)
            if problem is not None:
                tally.fail("non_envelope_results", f"{short(tool.name)} {problem}", repro)
                continue
            code = "ok" if result.ok else result.error.code if result.error else "?"
            tally.outcomes[code] += 1
            if code == "internal":
                tally.fail("internal_errors", short(tool.name), repro)
            if code == "invalid_arguments" and sent:
                tally.fail("requests_for_invalid_arguments", tool.name, repro)
            for request in sent:
                base = bases[k].get(request.integration, "")
                for why in request_problems(request, base):
                    tally.fail("requests_off_template", f"{tool.name} {why}", repro)
                for why in unsendable(request):
                    tally.fail("requests_unsendable", f"{tool.name} {why}", repro)
            if result.ok or sent:
                for name, value in args.items():
                    param = tool.parameters.get(name)
                    if param is None or value is None:
                        continue  # unknown keys and nulls: the contract does not decide them
                    why = definitely_invalid(param, value)
                    if why is not None:
                        signature = f"{tool.name}.{name} {labels.get(name)} ({why})"
                        tally.fail("invalid_values_accepted", signature, repro)
    finally:
        logging.getLogger("patchbay").removeHandler(errors)
        for rt in runtimes:
            await rt.close()
    line = tally.line(COUNTS) + f"; error logs {errors.count}"
    with capsys.disabled():
        print(f"\n{line}")
    failed = sum(tally.counts[c] for c in COUNTS)
    assert failed == 0 and errors.count == 0, "\n".join([line, tally.report(), *errors.first])
