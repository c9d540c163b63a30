"""A sweep killed with SIGKILL at any moment resumes to results identical to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from lipflow.sweep import load_spec, run_sweep
from lipflow.sweep.store import ResultStore

SPEC = """\
name = "killed"
metrics = ["recon_error", "forward_error", "inverse_error", "sigma_min", "cond"]
samples = 4

[axes]
block = ["affine"]
precision = ["float16", "bfloat16", "float32", "float64"]
depth = "1:16"
"""
TOTAL = 64  # enough cells after the last kill point that a loaded machine still kills mid-run


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whole")
    (folder / "spec.toml").write_text(SPEC)
    run = run_sweep(load_spec(folder / "spec.toml"), folder / "run", workers=1, progress=False)
    assert run.computed == TOTAL
    return run.store.results_path.read_bytes()


def _finished(folder) -> int:
    if not (folder / "spec.toml").exists():
        return 0
    store = ResultStore(folder)
    return len(store.finished(store.load_spec()))


def _run_and_kill(spec_path, out, after_cells: int) -> int:
    """Start ``lipflow sweep`` (2 workers) in its own process group; SIGKILL the group once
    ``after_cells`` cells are stored (0: as soon as the spec is saved). Returns the cells stored."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lipflow", "sweep", str(spec_path), "--out", str(out), "--workers", "2",
         "--no-progress", "--no-report"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if (out / "spec.toml").exists() and _finished(out) >= after_cells:
                break
            time.sleep(0.002)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    return _finished(out)


@pytest.mark.slow
@pytest.mark.parametrize("after_cells", [0, 7, 26])
def test_kill_then_resume_is_bit_identical(tmp_path, uninterrupted, after_cells):
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC)
    out = tmp_path / "run"
    stored = _run_and_kill(spec_path, out, after_cells)
    assert stored >= after_cells and stored < TOTAL  # killed mid-run
    # every stored cell is complete: the resumed run recomputes none of them
    resumed = subprocess.run(
        [sys.executable, "-m", "lipflow", "sweep", "--resume", str(out), "--no-progress", "--no-report"],
        capture_output=True, text=True, check=True,
    )
    assert f"{TOTAL - stored} computed now, {stored} already stored" in resumed.stdout
    assert ResultStore(out).results_path.read_bytes() == uninterrupted
    store = ResultStore(out)
    spec = store.load_spec()
    keys = [line.split(",")[1] for line in store.log_path.read_text().splitlines()[1:]]
    assert len(keys) == TOTAL * len(spec.metrics) and len(set(keys)) == TOTAL  # each cell once, nothing torn
