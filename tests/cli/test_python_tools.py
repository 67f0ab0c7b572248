"""Tools declared in Python load into every command: the README's module, end to end.

The module is taken from the README as it is written, saved in a fresh folder, and run with
`-c crm_tools:registry` and with `python: [crm_tools:registry]` against a real local server.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "crm-token-4c1e"


def readme_module() -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(r"```python\n(# crm_tools\.py\n.*?)```", text, re.DOTALL)
    assert found, "the README's crm_tools.py example is missing"
    return found.group(1)


class _Crm(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._answer(401, {"error": "no token"})
        elif self.path == "/contacts/c-7":
            self._answer(200, {"id": "c-7", "name": "Ada Obi", "plan": "pro", "ssn": "x"})
        else:
            self._answer(404, {"error": "no such contact"})

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def crm() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Crm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def patchbay(folder: Path, crm: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "patchbay.cli", *argv],
        cwd=folder,
        env={"PATH": "/usr/bin:/bin", "CRM_URL": crm, "CRM_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_readme_module_runs_with_dash_c(tmp_path: Path, crm: str) -> None:
    (tmp_path / "crm_tools.py").write_text(readme_module())
    listed = patchbay(tmp_path, crm, "tools", "-c", "crm_tools:registry")
    assert listed.returncode == 0, listed.stderr
    (tool,) = json.loads(listed.stdout)
    assert tool["function"]["name"] == "get_contact"
    assert tool["function"]["parameters"]["required"] == ["contact_id"]
    called = patchbay(
        tmp_path, crm, "call", "-c", "crm_tools:registry", "get_contact",
        "--args", '{"contact_id": "c-7"}',
    )  # fmt: skip
    assert called.returncode == 0, called.stderr
    result = json.loads(called.stdout)
    assert result["ok"] is True, result
    assert result["result"] == {"name": "Ada Obi", "plan": "pro"}
    valid = patchbay(tmp_path, crm, "validate", "-c", "crm_tools:registry")
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout.strip() == "ok: 1 integrations, 1 tools"


def test_a_config_names_the_registry_beside_its_own_tools(tmp_path: Path, crm: str) -> None:
    (tmp_path / "crm_tools.py").write_text(readme_module())
    (tmp_path / "patchbay.yaml").write_text(
        "version: 1\n"
        "python: [crm_tools:registry]\n"
        "tools:\n"
        "  get_plan:\n"
        "    integration: crm\n"
        "    description: Fetch a contact's plan.\n"
        "    parameters: {contact_id: {type: string}}\n"
        '    request: {method: GET, path: "/contacts/{contact_id}"}\n'
        "    response: {fields: {plan: plan}}\n"
    )
    listed = patchbay(tmp_path, crm, "tools", "--format", "mcp")
    assert listed.returncode == 0, listed.stderr
    assert sorted(t["name"] for t in json.loads(listed.stdout)) == ["get_contact", "get_plan"]
    for tool, answer in (
        ("get_contact", {"name": "Ada Obi", "plan": "pro"}),
        ("get_plan", {"plan": "pro"}),
    ):
        called = patchbay(tmp_path, crm, "call", tool, "--args", '{"contact_id": "c-7"}')
        assert called.returncode == 0, called.stderr
        assert json.loads(called.stdout)["result"] == answer


@pytest.mark.parametrize(
    ("python", "expected"),
    [
        ("[nowhere:registry]", "python[0]: cannot import 'nowhere'"),
        ("[crm_tools:os]", "python[0]: 'crm_tools:os' is a module, not a ToolRegistry"),
        ("crm_tools", "python: expected a list of 'module:registry' references"),
        (
            "[crm_tools:registry, crm_tools:registry]",
            "integrations.crm: this integration is defined both",
        ),
    ],
)
def test_a_bad_python_entry_is_named_with_its_location(
    tmp_path: Path, crm: str, python: str, expected: str
) -> None:
    (tmp_path / "crm_tools.py").write_text(readme_module())
    (tmp_path / "patchbay.yaml").write_text(f"version: 1\npython: {python}\n")
    done = patchbay(tmp_path, crm, "validate")
    assert done.returncode == 2
    assert f"patchbay: {expected}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_handler_that_cannot_be_found_by_name_is_refused(tmp_path: Path, crm: str) -> None:
    (tmp_path / "made.py").write_text(
        "from patchbay import ToolRegistry\n"
        "registry = ToolRegistry(integrations={'crm': {'base_url': 'http://127.0.0.1:9'}})\n"
        "def build():\n"
        "    @registry.tool(integration='crm', name='inner')\n"
        "    async def inner(ctx, contact_id: str) -> dict:\n"
        "        '''Fetch a contact.'''\n"
        "        return {}\n"
        "build()\n"
    )
    done = patchbay(tmp_path, crm, "tools", "-c", "made:registry")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "patchbay: tools.inner.handler: the handler cannot be imported as "
        "'made:build.<locals>.inner'; define it at the top level of a module"
    )
    not_a_registry = patchbay(tmp_path, crm, "tools", "-c", "made:build")
    assert not_a_registry.stderr.strip() == (
        "patchbay: made:build: this is a function, not a ToolRegistry or Config"
    )


def test_an_unknown_module_reference_is_one_line(tmp_path: Path, crm: str) -> None:
    done = patchbay(tmp_path, crm, "tools", "-c", "no_such_module:registry")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "patchbay: no_such_module:registry: cannot import 'no_such_module': "
        "No module named 'no_such_module'"
    )


def test_docs_take_the_registry_too(tmp_path: Path, crm: str) -> None:
    (tmp_path / "crm_tools.py").write_text(readme_module())
    docs = patchbay(tmp_path, crm, "docs", "-c", "crm_tools:registry", "-o", "out")
    assert docs.returncode == 0, docs.stderr
    assert "get_contact" in (tmp_path / "out" / "crm.md").read_text()


async def test_mcp_serves_the_registry_over_stdio(tmp_path: Path, crm: str) -> None:
    (tmp_path / "crm_tools.py").write_text(readme_module())
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "patchbay.cli", "mcp", "-c", "crm_tools:registry"],
        env={"PATH": "/usr/bin:/bin", "CRM_URL": crm, "CRM_TOKEN": TOKEN},
        cwd=tmp_path,
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        assert [t.name for t in (await session.list_tools()).tools] == ["get_contact"]
        answer = await session.call_tool("get_contact", {"contact_id": "c-7"})
    assert answer.structured_content is not None
    assert answer.structured_content["result"] == {"name": "Ada Obi", "plan": "pro"}
