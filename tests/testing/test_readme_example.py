"""The README's handler unit test example, run as a user would run it: with pytest."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    """The Python block of the README's "Testing your integration" section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Testing your integration", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    [block] = [b for b in blocks if "FakeTransport()" in b]
    return block


def test_the_readme_handler_test_example_passes(tmp_path: Path) -> None:
    example = tmp_path / "test_billing_handlers.py"
    example.write_text(readme_example(), encoding="utf-8")
    # A user's own settings, not this project's (whose asyncio mode is auto: the example must
    # mark its async tests itself).
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    # Run from the repository root, where the example's config path points.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-c", str(ini), "--rootdir", str(tmp_path), str(example)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
