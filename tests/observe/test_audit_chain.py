"""The audit trail: one chained line per tool call; any edit, removal, reordering or forgery
is found and named by the line where the chain breaks."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from patchbay import CallContext, ToolRuntime
from patchbay.observe import AuditSink, Event
from patchbay.observe._chain import verify
from patchbay.spec import load_config_text
from patchbay.testing import BillingServer

AUDIT_KEY = "audit-hmac-key-4f1e9a"
CALLER = "+15551234567"
EMAIL = "jamie.patel@example.com"

CONFIG = """
version: 1
observe:
  audit: {path: trail/audit.jsonl, key: env:PB_AUDIT_KEY}
integrations:
  billing:
    base_url: ${BILLING_URL}
    auth: {type: api_key, header: X-API-Key, secret: env:BILLING_API_KEY}
    retry: {attempts: 1}
tools:
  find_customer:
    integration: billing
    description: Find a customer by phone.
    parameters:
      phone: {type: string, format: e164}
    request: {method: GET, path: /customers/search, query: {phone: "{args.phone}"}}
    response: {root: data.customer, strip: [internal_flags]}
  create_payment:
    integration: billing
    description: Pay an invoice.
    parameters:
      customer_id: {type: string}
      invoice_id: {type: string}
      amount: {type: integer, minimum: 1}
      payment_method_id: {type: string}
    request:
      method: POST
      path: /payments
      body: {customer_id: "{args.customer_id}", invoice_id: "{args.invoice_id}",
             amount: "{args.amount}", payment_method_id: "{args.payment_method_id}"}
    idempotency: {key: "call_{call.id}_invoice_{args.invoice_id}"}
    audit: [amount, invoice_id, confirmation_number]
"""


def _sink_with_lines(path: Path, count: int, key: bytes | None = None) -> list[str]:
    sink = AuditSink(path, key=key)
    for i in range(count):
        sink.emit(Event(kind="tool_call", tool="t", call_id=f"c-{i}", outcome="ok"))
    sink.close()
    return path.read_text().splitlines()


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


async def test_a_tool_call_leaves_one_chained_line_with_who_and_what(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PB_AUDIT_KEY", AUDIT_KEY)
    async with BillingServer(in_process=True) as billing:
        monkeypatch.setenv("BILLING_API_KEY", billing.api_key)
        env = {"BILLING_URL": billing.url}
        config = load_config_text(CONFIG, base_dir=tmp_path, env=env)
        async with ToolRuntime(config, sinks=[]) as rt:
            call = CallContext(id="c-1", tenant=None, caller=CALLER)
            found = await rt.call_tool("find_customer", {"phone": CALLER}, call)
            paid = await rt.call_tool(
                "create_payment",
                {"customer_id": "cus_8F2kLq", "invoice_id": "inv_1001", "amount": 24700,
                 "payment_method_id": "pm_card_visa4242"},
                call,
            )  # fmt: skip
    assert found.ok and paid.ok, (found, paid)
    path = tmp_path / "trail" / "audit.jsonl"
    text = path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [x["tool"] for x in lines] == ["find_customer", "create_payment"]
    pay = lines[1]
    assert pay["operation"] == "POST /payments" and pay["integration"] == "billing"
    assert pay["outcome"] == "ok" and pay["call_id"] == "c-1" and "at" in pay
    assert pay["fields"]["amount"] == 24700 and pay["fields"]["invoice_id"] == "inv_1001"
    assert pay["fields"]["confirmation_number"].startswith("PAY-")
    assert "fields" not in lines[0]  # nothing listed: no argument value at all
    idempotency_key = paid.meta["idempotency_key"]
    for leaked in (AUDIT_KEY, billing.api_key, CALLER, "5551234567", EMAIL, idempotency_key):
        assert leaked not in text
    assert verify([path], AUDIT_KEY.encode()) == (2, None)


def test_an_edited_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = _sink_with_lines(path, 4)
    lines[2] = lines[2].replace('"outcome":"ok"', '"outcome":"timeout"')
    _write(path, lines)
    _, broken = verify([path], None)
    assert broken is not None and broken.line == 3 and "edited" in broken.reason


def test_a_removed_line_breaks_the_chain_at_the_next(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = _sink_with_lines(path, 4)
    _write(path, lines[:1] + lines[2:])
    _, broken = verify([path], None)
    assert broken is not None and broken.line == 2 and "removed" in broken.reason


def test_removing_the_first_lines_is_found_unless_earlier_files_are_archived(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    lines = _sink_with_lines(path, 4)
    _write(path, lines[2:])
    _, broken = verify([path], None)
    assert broken is not None and broken.line == 1 and "seq 3, not 1" in broken.reason
    assert verify([path], None, partial=True) == (2, None)


def test_reordered_lines_are_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = _sink_with_lines(path, 4)
    _write(path, [lines[0], lines[2], lines[1], lines[3]])
    _, broken = verify([path], None)
    assert broken is not None and broken.line == 2


def test_a_line_appended_out_of_chain_is_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = _sink_with_lines(path, 3)
    _write(path, [*lines, lines[1]])  # a copy of a genuine line, replayed at the end
    _, broken = verify([path], None)
    assert broken is not None and broken.line == 4 and "out of chain" in broken.reason


def test_a_keyed_chain_cannot_be_recomputed_without_the_key(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    key = AUDIT_KEY.encode()
    lines = _sink_with_lines(path, 3, key=key)
    assert verify([path], key) == (3, None)
    # A forger rewrites line 2 and reseals everything after it with a plain hash.
    forged, prev = [lines[0]], json.loads(lines[0])["mac"]
    for line in lines[1:]:
        body = re.sub(r',"mac":"[0-9a-f]{64}"\}$', "", line)
        body = re.sub(r'"prev":"[0-9a-f]{64}"', f'"prev":"{prev}"', body)
        body = body.replace('"outcome":"ok"', '"outcome":"refunded"')
        prev = hashlib.sha256(body.encode()).hexdigest()
        forged.append(f'{body},"mac":"{prev}"}}')
    _write(path, forged)
    _, broken = verify([path], key)
    assert broken is not None and broken.line == 2
    # A line forged with a wrong key, appended to the genuine trail, is found as well.
    _write(path, lines)
    sink = AuditSink(path, key=b"not-the-key")  # continues the chain, with the wrong key
    sink.emit(Event(kind="tool_call", tool="t", call_id="forged", outcome="ok"))
    sink.close()
    _, broken = verify([path], key)
    assert broken is not None and broken.line == 4


def test_a_reopened_trail_continues_its_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _sink_with_lines(path, 2)
    _sink_with_lines(path, 2)
    assert verify([path], None) == (4, None)
    assert [json.loads(x)["seq"] for x in path.read_text().splitlines()] == [1, 2, 3, 4]


def test_two_sinks_of_one_process_continue_one_chain(tmp_path: Path) -> None:
    """A reloaded gateway's old and new runtime write the same trail for a while."""
    path = tmp_path / "audit.jsonl"
    old = AuditSink(path, key=b"k", rotate_bytes=2048)
    new = AuditSink(tmp_path / "." / "audit.jsonl", key=b"k", rotate_bytes=2048)
    for i in range(30):
        sink = old if i % 3 else new
        sink.emit(Event(kind="tool_call", tool="create_payment", call_id=f"c-{i}", outcome="ok"))
    old.close()
    for i in range(30, 35):  # the new one goes on alone once the old one has finished
        new.emit(Event(kind="tool_call", tool="create_payment", call_id=f"c-{i}", outcome="ok"))
    new.close()
    files = sorted(tmp_path.glob("audit*.jsonl"))
    assert len(files) >= 2  # rotated while both wrote: still one chain across the files
    assert verify(files, b"k") == (35, None)


def test_rotation_carries_the_chain_across_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = AuditSink(path, rotate_bytes=1024)
    for i in range(40):
        sink.emit(Event(kind="tool_call", tool="create_payment", call_id=f"c-{i}", outcome="ok"))
    sink.close()
    files = sorted(tmp_path.glob("audit*.jsonl"))
    assert len(files) >= 3 and all(f.stat().st_size <= 1024 for f in files)
    assert verify(files, None) == (40, None)
    assert verify(list(reversed(files)), None) == (40, None)  # any order: chain order is found
    assert verify(files[1:], None)[1] is not None  # the first file is missing
    assert verify(files[1:], None, partial=True)[1] is None  # ... archived elsewhere
    # Reopened after rotation, the chain goes on from the newest file.
    path.unlink()
    sink = AuditSink(path, rotate_bytes=1024)
    sink.emit(Event(kind="tool_call", tool="t", call_id="after", outcome="ok"))
    sink.close()
    assert verify(sorted(tmp_path.glob("audit*.jsonl")), None)[1] is None
    # A rotated file missing from the middle is a break.
    rotated = sorted(tmp_path.glob("audit.0*.jsonl"))
    rest = [f for f in sorted(tmp_path.glob("audit*.jsonl")) if f != rotated[1]]
    _, broken = verify(rest, None)
    assert broken is not None and broken.path == str(rotated[2]) and broken.line == 1
