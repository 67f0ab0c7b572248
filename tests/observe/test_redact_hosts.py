"""Redaction keeps the host of a connection failure readable and still hides phone numbers."""

from __future__ import annotations

import pytest

from patchbay.observe import REDACTED, Redactor

redactor = Redactor(lambda: [])


@pytest.mark.parametrize(
    "text", ["GET 127.0.0.1:9/x: Connection refused", "10.0.12.200:8042", "host 192.168.1.1"]
)
def test_ipv4_addresses_stay(text: str) -> None:
    assert redactor.text(text) == text


@pytest.mark.parametrize(
    "phone", ["555.123.4567", "1.555.123.4567", "+1 555 123 4567", "+15551234567", "555-123-4567"]
)
def test_phone_numbers_still_go(phone: str) -> None:
    assert redactor.text(f"caller {phone} at 127.0.0.1:9") == f"caller {REDACTED} at 127.0.0.1:9"
