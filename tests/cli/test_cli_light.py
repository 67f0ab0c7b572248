"""The CLI feels instant: light commands load only what they use, and help reads plainly.

Start-up is checked by what a command imports, not by timing it (the machine is shared):
`make bench` prints the times against a bare `python -c pass`.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import patchbay
from patchbay.cli import app
from patchbay.cli._commands import Format
from patchbay.spec import SchemaFormat

ROOT = Path(__file__).resolve().parents[2]

# What a server, a call or the MCP SDK needs; `--help`, `validate` and `tools` need none of it.
HEAVY = (
    "aiohttp",
    "redis",
    "mcp",
    "starlette",
    "uvicorn",
    "prometheus_client",
    "phonenumbers",
    "email_validator",
    "jwt",
    "cryptography",
    "rich",
    "httptools",
    "patchbay.runtime._runtime",
    "patchbay.gateway",
    "patchbay.integrations",
    "patchbay.testing",
)
PROBE = """
import atexit, sys
heavy = {heavy!r}
atexit.register(lambda: print("LOADED", sorted(
    h for h in heavy if any(m == h or m.startswith(h + ".") for m in sys.modules)
), file=sys.stderr))
sys.argv = ["patchbay", *{argv!r}]
from patchbay.cli import main
main()
"""
CONFIG = """
version: 1
integrations:
  billing:
    base_url: http://127.0.0.1:9
    auth: {type: api_key, header: X-API-Key, secret: env:PB_LIGHT_KEY}
tools:
  get_customer:
    integration: billing
    description: Fetch a customer.
    parameters:
      customer_id: {type: string, pattern: "^cus_[A-Za-z0-9]+$"}
    request: {method: GET, path: "/customers/{customer_id}"}
    response: {root: data.customer, fields: {customer_name: name}}
"""
LAZY_PACKAGES = (
    "patchbay",
    "patchbay.http",
    "patchbay.state",
    "patchbay.observe",
    "patchbay.policies",
    "patchbay.runtime",
    "patchbay.gateway",
    "patchbay.integrations",
)


def _loaded(folder: Path, *argv: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY, argv=list(argv))],
        cwd=folder,
        env={"PATH": "/usr/bin:/bin", "PB_LIGHT_KEY": "k", "BILLING_API_KEY": "k"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = [x for x in done.stderr.splitlines() if x.startswith("LOADED ")][-1]
    return done, eval(line.removeprefix("LOADED "))  # a list literal printed by the probe


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["validate"],
        ["tools"],
        ["tools", "--format", "anthropic"],
        ["call", "--help"],
        ["serve", "--help"],
    ],
)
def test_light_commands_load_no_server_stack(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / "patchbay.yaml").write_text(CONFIG)
    done, loaded = _loaded(tmp_path, *argv)
    assert done.returncode == 0, done.stderr
    assert loaded == []


def test_validating_the_example_loads_no_server_stack() -> None:
    """Its handler module imports `patchbay`: that must stay light as well."""
    config = str(ROOT / "examples" / "billing" / "patchbay.yaml")
    done, loaded = _loaded(ROOT, "validate", "-c", config)
    assert done.returncode == 0, done.stderr
    assert loaded == []


def test_docs_command_starts_light(tmp_path: Path) -> None:
    if "docs" not in {c.name or c.callback.__name__ for c in app.registered_commands}:
        pytest.skip("no docs command registered")
    (tmp_path / "patchbay.yaml").write_text(CONFIG)
    done, loaded = _loaded(tmp_path, "docs", "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert [m for m in loaded if m not in ("rich",)] == []


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "patchbay.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert (
        done.stdout == f"patchbay {version('patchbay')}\n" == f"patchbay {patchbay.__version__}\n"
    )


def _help(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "patchbay.cli", *argv, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_help_has_no_type_markers_or_placeholders() -> None:
    commands = sorted(c.name or c.callback.__name__ for c in app.registered_commands)
    for command in ["", *commands]:
        text = _help(*([command] if command else []))
        for marker in ("<str>", "<bool>", "<int>", "<path>", "{tool}", "{TOOL}", "╭"):
            assert marker not in text, (command, marker, text)
    call = _help("call")
    assert "Usage: patchbay call [OPTIONS] TOOL" in call
    assert "--args TEXT" in call
    assert "--format [openai|realtime|anthropic|gemini|mcp]" in _help("tools")
    assert "--version" in _help()


def test_format_choices_are_the_specs() -> None:
    assert [f.value for f in Format] == [f.value for f in SchemaFormat]


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_lazy_packages_export_exactly_their_names(name: str) -> None:
    package = importlib.import_module(name)
    for public in package.__all__:
        assert getattr(package, public) is not None, public
    public_now = {n for n in vars(package) if not n.startswith("_")}
    submodules = {n for n in public_now if type(vars(package)[n]).__name__ == "module"}
    named = {n for n in package.__all__ if not n.startswith("_")}
    assert public_now - (submodules - named) - {"TYPE_CHECKING", "lazy_exports"} == named
    assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        package.nope  # noqa: B018


def test_make_install_says_what_it_is_installing(tmp_path: Path) -> None:
    """On a fresh machine (no virtualenv yet) every step is announced and pip is not silenced."""
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["make", "-n", "-B", f"VENV={venv}", f"{venv}/.installed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    plan = done.stdout
    assert "creating the virtualenv" in plan
    assert "installing patchbay and its dependencies" in plan
    install = [line for line in plan.splitlines() if "pip install" in line and "-e " in line]
    assert len(install) == 1 and "--quiet" not in install[0] and "-q " not in install[0]


def test_subpackages_stay_reachable_as_attributes() -> None:
    """`import patchbay` then `patchbay.gateway.X`, as when every subpackage loaded eagerly."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import patchbay; print(patchbay.gateway.Platform.VAPI.value,"
            " patchbay.integrations.openai_realtime.__name__)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.split() == ["vapi", "patchbay.integrations.openai_realtime"], done.stderr
