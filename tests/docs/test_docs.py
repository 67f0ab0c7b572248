"""`patchbay docs` pages as a reader gets them: Markdown, HTML, and HTML in a real browser."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from patchbay.docs import Interaction, Step, render_html, render_markdown
from patchbay.spec import Config, load_config, load_config_text

ROOT = Path(__file__).resolve().parents[2]
BILLING = ROOT / "examples" / "billing" / "patchbay.yaml"
ARTIFACTS = ROOT / ".artifacts"

PAY_BILL = Interaction(
    name="pay_bill",
    description="The caller pays their open invoice.",
    steps=(
        Step("lookup_customer_invoices", {"phone": "555-123-4567"},
             {"ok": True, "result": {"customer_name": "Jamie Patel"}}),
        Step("create_payment",
             {"invoice_id": "inv_1001", "amount": 24700, "payment_method_id": "pm_card_visa4242"},
             {"ok": True, "meta": {"attempts": 2}}, ({"status": 500, "times": 1},)),
    ),
)  # fmt: skip


@pytest.fixture(scope="module")
def billing() -> Config:
    return load_config(BILLING)


def _section(text: str, tool: str) -> str:
    """The part of a Markdown page about one tool."""
    start = text.index(f"## {tool}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_markdown_has_every_tool_with_inputs_errors_and_limits(billing: Config) -> None:
    pages = render_markdown(billing, [PAY_BILL])
    assert list(pages) == ["billing.md"]
    text = pages["billing.md"]
    for name in billing.tools:
        assert f"## {name}\n" in text
    pay = _section(text, "create_payment")
    assert "**When the agent calls it:** The caller has heard the amount due" in pay
    assert "| name | type | required | description | rules |" in pay
    assert "| amount | integer | yes | amount in cents | at least 1; at most 1000000 |" in pay
    # error codes with the words the LLM hears: say, messages and rule messages
    assert re.search(r"\| pending \|[^\n]*The payment is still being confirmed", pay)
    assert re.search(r"\| upstream_unavailable \|[^\n]*nothing was charged", pay)
    assert "| PAY_422_AMOUNT | that amount is not valid for this invoice |" in pay
    assert "amount must not exceed the open invoice; look the invoices up first" in pay
    # limits
    assert "| budget | 6 s for the whole call, retries included |" in pay
    assert "| idempotency | key call_{call.id}_invoice_{args.invoice_id} in Idempotency-Key" in pay
    assert "resent with the same idempotency key" in pay
    # outputs: the fields, and the example answer
    assert "| success | status == 'completed' |" in pay
    assert '"confirmation_number": "PAY-7F3A9C21D0"' in pay
    # example interactions from the scenarios, faults included
    assert '`pay_bill`: `{"invoice_id": "inv_1001"' in pay
    assert 'with faults [{"status": 500, "times": 1}]' in pay
    lookup = _section(text, "lookup_customer_invoices")
    assert "| phone | string | one of phone, email |" in lookup
    assert "the handler returns" in lookup
    assert "give at least one of phone, email; none was given" in lookup
    assert "## Scripted conversations" in text


HOSTILE = """
version: 1
integrations:
  shop:
    base_url: http://shop.invalid
tools:
  find_order:
    integration: shop
    description: "Find an order <script>alert(1)</script> | by number"
    when: "The caller says <b>order</b> & gives a number"
    parameters:
      number: {type: string, description: "digits | letters\\nsecond line"}
    request: {method: GET, path: "/orders/{number}"}
    response:
      messages: {"E|1": "no <order> with that number"}
  ring_back:
    builtin: callback_request
    description: Ask for a call back.
"""


def test_user_text_is_escaped_in_markdown_and_html() -> None:
    cfg = load_config_text(HOSTILE)
    md = render_markdown(cfg)
    assert set(md) == {"shop.md", "builtin.md"}
    assert "| number | string | yes | digits \\| letters second line |" in md["shop.md"]
    assert "| E\\|1 | no <order> with that number |" in md["shop.md"]
    html = render_html(cfg)["shop.html"]
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>order</b>" not in html and "&lt;b&gt;order&lt;/b&gt; &amp; gives" in html
    assert "no &lt;order&gt; with that number" in html
    assert "ring_back" in render_html(cfg)["builtin.html"]


def test_html_is_one_self_contained_file(billing: Config) -> None:
    html = render_html(billing, [PAY_BILL])["billing.html"]
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<style>" in html
    for external in ("<script", "<link", "src=", "@import", "url("):
        assert external not in html
    for name in billing.tools:
        assert f'<section class="tool" id="{name}">' in html
    assert "<code>PAY_422_AMOUNT</code>" in html
    assert "The payment is still being confirmed" in html
    assert "6 s for the whole call" in html


def _png_pixels(data: bytes) -> bytes:
    """The decompressed image data of a PNG (filter bytes included): enough to see variety."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return zlib.decompress(idat)


def test_the_html_page_renders_in_a_headless_browser(
    billing: Config, tmp_path: Path, require_binary: Callable[..., str]
) -> None:
    browser = require_binary("chromium", "chromium-browser", package="chromium")
    page = tmp_path / "billing.html"
    page.write_text(render_html(billing, [PAY_BILL])["billing.html"], encoding="utf-8")
    shot = tmp_path / "docs.png"
    # Offline on purpose: no network, no sync, no component updates, a throwaway profile.
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
        "--window-size=1200,1600", page.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, timeout=90, check=False)
    assert shot.is_file(), done.stderr.decode(errors="replace")[-2000:]
    data = shot.read_bytes()
    assert len(data) > 20_000  # a blank 1200x1600 page compresses to a few KB
    pixels = _png_pixels(data)
    assert len(set(pixels)) > 64  # text, tables and colours, not one flat colour
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "docs.png")
