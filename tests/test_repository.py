"""Repository contracts: the README's commands and CI agree, the core never imports extras."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_command(marker: str) -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(f"<!-- {marker} -->")
    assert lines[start + 1] == "```bash"
    return lines[start + 2]


def test_readme_opens_with_the_two_commands():
    main, tests = _readme_command("main-command"), _readme_command("test-command")
    assert "lipflow reproduce fig1" in main and "pip install ." in main
    assert "'.[test]'" in tests and "pytest" in tests


def test_ci_runs_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    assert "readme_command test-command" in script
    extracted = subprocess.run(
        ["bash", "-c", "source <(sed -n '/^readme_command()/,/^}/p' .ci/run); readme_command test-command"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert extracted == _readme_command("test-command")


def test_core_import_pulls_no_optional_dependency():
    code = (
        "import sys, lipflow, lipflow.cli.main; "
        "print(sorted(m for m in ('torch', 'hypothesis', 'dask', 'sklearn') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_ci_installs_every_optional_extra_of_pyproject():
    """Step (b) of CI reads the extras from pyproject.toml, so a new extra is tested without edits."""
    import tomllib

    script = (ROOT / ".ci" / "run").read_text()
    line = next(line for line in script.splitlines() if line.startswith("extras=$("))
    extracted = subprocess.run(["bash", "-c", line + '; echo "$extras"'], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.strip()
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extracted.split(",") == list(declared)
    assert '-e ".[$extras]"' in script and "HYPOTHESIS_PROFILE=ci" in script and "mkdocs\" build --strict" in script
