"""What a newcomer hits first: why a call got no answer, a URL where a path goes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = """
version: 1
integrations:
  crm:
    base_url: {base_url}
tools:
  get_contact:
    integration: crm
    description: Fetch a contact.
    parameters:
      contact_id: {{type: string}}
    request: {{method: GET, path: "{path}"}}
"""


def patchbay(folder: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "patchbay.cli", *argv],
        cwd=folder,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_connection_is_explained_to_people_not_the_llm(tmp_path: Path) -> None:
    port = _closed_port()
    base = f"http://127.0.0.1:{port}"
    (tmp_path / "patchbay.yaml").write_text(
        CONFIG.format(base_url=base, path="/contacts/{contact_id}")
    )
    done = patchbay(tmp_path, "call", "get_contact", "--args", '{"contact_id": "c-1"}')
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["error"]["code"] == "upstream_unavailable"
    heard = json.dumps(result)
    assert "127.0.0.1" not in heard and "refused" not in heard.lower()  # the LLM hears words
    lines = done.stderr.strip().splitlines()
    assert len(lines) == result["meta"]["attempts"] == 3
    for n, line in enumerate(lines, 1):
        assert line.startswith(
            f"patchbay: attempt {n}: GET 127.0.0.1:{port}/contacts/{{contact_id}}: "
        )
        assert "Connection refused" in line  # the operating system's reason
    assert "c-1" not in done.stderr  # the filled path may hold a caller's details


def test_events_carry_the_reason_for_logs(tmp_path: Path) -> None:
    port = _closed_port()
    (tmp_path / "patchbay.yaml").write_text(
        CONFIG.format(base_url=f"http://127.0.0.1:{port}", path="/contacts/{contact_id}")
    )
    done = patchbay(tmp_path, "call", "get_contact", "--args", '{"contact_id": "c"}', "--events")
    events = [json.loads(x) for x in done.stderr.splitlines()]
    attempts = [e for e in events if e["kind"] == "attempt"]
    assert attempts and all(a["outcome"] == "network_error" for a in attempts)
    assert all(f"127.0.0.1:{port}" in a["extra"]["error"] for a in attempts)
    assert all("Connection refused" in a["extra"]["error"] for a in attempts)


@pytest.mark.parametrize(
    ("path", "fix"),
    [
        ("https://api.example.com/contacts/{contact_id}", "'/contacts/{contact_id}'"),
        ("//api.example.com/contacts/{contact_id}", "'/contacts/{contact_id}'"),
        ("http://api.example.com", "'/'"),
    ],
)
def test_validate_refuses_a_url_as_request_path(tmp_path: Path, path: str, fix: str) -> None:
    (tmp_path / "patchbay.yaml").write_text(
        CONFIG.format(base_url="https://api.example.com", path=path)
    )
    done = patchbay(tmp_path, "validate")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"patchbay: tools.get_contact.request.path: is a URL, not a path: write {fix} here "
        f"and put '{'https' if path.startswith('//') else path.split(':')[0]}://api.example.com' "
        "in integrations.crm.base_url"
    )


def test_validate_refuses_a_url_as_an_operation_path(tmp_path: Path) -> None:
    (tmp_path / "patchbay.yaml").write_text(
        "version: 1\nintegrations:\n  crm:\n    base_url: https://api.example.com\n"
        "    operations: [{method: GET, path: 'https://other.example.com/x'}]\n"
    )
    done = patchbay(tmp_path, "validate")
    assert done.returncode == 2
    assert "integrations.crm.operations[0].path: is a URL, not a path" in done.stderr
