"""Fixed headers in the config must be sendable as written: checked at load, not on the wire."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchbay import ConfigError, load_config

_BASE = """
version: 1
integrations:
  billing:
    base_url: http://127.0.0.1:9
{integration_extra}
tools:
  get_customer:
    integration: billing
    description: Fetch a customer.
    parameters:
      customer_id: {{type: string}}
    request:
      method: GET
      path: /customers/{{customer_id}}
{request_extra}
"""


def _load(tmp_path: Path, integration_extra: str = "", request_extra: str = "") -> None:
    path = tmp_path / "patchbay.yaml"
    path.write_text(_BASE.format(integration_extra=integration_extra, request_extra=request_extra))
    load_config(str(path), env={})


@pytest.mark.parametrize(
    ("integration_extra", "location"),
    [
        ('    headers: {X-Team: "a\\x0bb"}', "integrations.billing.headers.X-Team"),
        ('    headers: {"X Team": "a"}', "integrations.billing.headers.X Team"),
        (
            '    version: {header: X-API-Version, value: "2024\\x1b[31m"}',
            "integrations.billing.headers.X-API-Version",
        ),
    ],
)
def test_integration_headers_with_control_characters_or_bad_names_are_refused(
    tmp_path: Path, integration_extra: str, location: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, integration_extra=integration_extra)
    assert location in str(caught.value)


def test_a_tool_header_with_a_control_character_is_refused(tmp_path: Path) -> None:
    extra = '      headers: {X-Trace: "a\\x0cb{args.customer_id}"}'
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, request_extra=extra)
    assert "tools.get_customer.request.headers.X-Trace" in str(caught.value)


def test_tabs_and_ordinary_headers_load(tmp_path: Path) -> None:
    _load(
        tmp_path,
        integration_extra='    headers: {X-Team: "a\\tb"}',
        request_extra='      headers: {X-Trace: "t-{args.customer_id}"}',
    )
