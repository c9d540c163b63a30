"""Every examples/*.py script states its purpose in one line and runs at small sizes.

The contract for a script: a module docstring whose first line says what it shows, an
``if __name__ == "__main__":`` guard, and, when the environment variable ``LIPFLOW_SMOKE=1``
is set, sizes small enough to finish in seconds. Scripts run in a temporary working folder (so
whatever they write lands there) with the Agg matplotlib backend. A script that imports an
optional package which is not installed (torch, hypothesis, ...) is skipped with the reason, and
so is one that stops with lipflow's :class:`~lipflow.errors.MissingExtraError` (an experiment
that needs an extra, e.g. scikit-learn's digits) when that module is indeed not installed. The
runs are marked ``thorough``: CI's second step runs them (``HYPOTHESIS_PROFILE=ci``), and so does
``pytest --thorough``; the purpose checks run always.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
#: seconds one smoke run may take before it counts as a failure (sizes must shrink under SMOKE)
SMOKE_TIMEOUT_S = 180

pytestmark = pytest.mark.skipif(not EXAMPLES, reason="examples/ has no scripts yet")


def _imported_top_level(tree: ast.AST) -> set[str]:
    """Top-level package names the script imports unconditionally (imports guarded by a
    ``try`` are the script's own business)."""
    names: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Try):
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        else:
            names |= _imported_top_level(node)
    return names


_MISSING_EXTRA = re.compile(r"^lipflow\.errors\.MissingExtraError: (?P<message>.*)$", re.MULTILINE)


def _missing_extra(stderr: str) -> str:
    """The message of a MissingExtraError that ended a script, if the extra is truly missing."""
    matches = list(_MISSING_EXTRA.finditer(stderr))
    if not matches:
        return ""
    message = matches[-1].group("message")
    modules = re.findall(r"pip install '?lipflow\[(\w+)\]", message)
    extra_modules = {"experiments": "sklearn", "torch": "torch", "certified": "flint", "dask": "distributed"}
    if any(importlib.util.find_spec(extra_modules.get(m, m)) is not None for m in modules):
        return ""  # the extra is installed: the script failed for another reason
    return message


def _ids(path: Path) -> str:
    return path.name



@pytest.mark.parametrize("script", EXAMPLES, ids=_ids)
def test_example_states_its_purpose(script: Path) -> None:
    tree = ast.parse(script.read_text(encoding="utf-8"))
    docstring = ast.get_docstring(tree)
    assert docstring, f"{script.name}: add a module docstring whose first line says what the script shows"
    lines = docstring.splitlines()
    assert lines[0].strip(), f"{script.name}: the docstring's first line must state the purpose"
    assert len(lines) == 1 or not lines[1].strip(), (
        f"{script.name}: the purpose must fit on the docstring's first line (then a blank line)"
    )
    guarded = any(
        isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body
    )
    assert guarded, f'{script.name}: put the work under if __name__ == "__main__":'


@pytest.mark.thorough  # a whole script per case (2-15 s each): CI's step b and --thorough
@pytest.mark.parametrize("script", EXAMPLES, ids=_ids)
def test_example_runs_at_smoke_size(script: Path, tmp_path: Path) -> None:
    tree = ast.parse(script.read_text(encoding="utf-8"))
    missing = sorted(
        name for name in _imported_top_level(tree) if importlib.util.find_spec(name) is None
    )
    if missing:
        pytest.skip(f"{script.name} needs {', '.join(missing)}, which is not installed")
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "LIPFLOW_SMOKE": "1", "MPLBACKEND": "Agg", "PYTHONPATH": path}
    try:
        result = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=SMOKE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script.name} did not finish in {SMOKE_TIMEOUT_S} s with LIPFLOW_SMOKE=1", pytrace=False)
    missing_extra = _missing_extra(result.stderr)
    if result.returncode != 0 and missing_extra:
        pytest.skip(f"{script.name}: {missing_extra}")
    assert result.returncode == 0, (
        f"{script.name} exited with {result.returncode} under LIPFLOW_SMOKE=1\n"
        f"--- stdout (tail) ---\n{result.stdout[-2000:]}\n--- stderr (tail) ---\n{result.stderr[-4000:]}"
    )
