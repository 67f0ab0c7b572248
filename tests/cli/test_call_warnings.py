"""`patchbay call` warns on stderr when the API says an endpoint is deprecated or sunset."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from patchbay.cli import app

runner = CliRunner()

CONFIG = """
version: 1
integrations:
  api:
    base_url: http://127.0.0.1:{port}
tools:
  old_item:
    integration: api
    description: Read an item from a deprecated endpoint.
    parameters:
      item_id: {{type: string}}
    request: {{method: GET, path: "/old/{{item_id}}"}}
"""


class _Deprecated(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"id": self.path.rsplit("/", 1)[-1]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Deprecation", "@1688169599")
        self.send_header("Sunset", "Wed, 11 Nov 2026 23:59:59 GMT")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def deprecated_api() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Deprecated)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_call_prints_a_deprecation_warning_on_stderr(deprecated_api: int, tmp_path: Path) -> None:
    path = tmp_path / "patchbay.yaml"
    path.write_text(CONFIG.format(port=deprecated_api))
    result = runner.invoke(
        app, ["call", "-c", str(path), "old_item", "--args", '{"item_id": "i7"}']
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: api GET /old/{item_id} is deprecated since 2023-06-30T23:59:59Z, "
        "sunset on 2026-11-11T23:59:59Z"
    ]
    assert "i7" not in result.stderr
