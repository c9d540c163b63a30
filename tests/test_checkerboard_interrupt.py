"""Stopping a parallel checkerboard run the way people do: kill the parent alone, or press
Ctrl-C twice. The worker processes must not outlive it, and no half-written result is left."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import alive_processes, descendants

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find worker processes")

# two models in two worker processes, each training for minutes unless stopped
ARGS = ["reproduce", "checkerboard", "--backend", "numpy", "--jobs", "2", "--models", "affine", "modified",
        "--depth", "8", "--hidden", "8", "--steps", "100000", "--grid-step", "1.0", "--no-progress"]


def _start(out: Path) -> tuple[subprocess.Popen, set[int]]:
    process = subprocess.Popen([sys.executable, "-m", "lipflow", *ARGS, "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while time.monotonic() < deadline:  # the spawn start method adds a resource tracker: wait for both workers
        workers = {pid for pid in descendants(process.pid) if "spawn_main" in _cmdline(pid)
                   and "resource_tracker" not in _cmdline(pid)}
        if len(workers) >= 2:
            time.sleep(1.0)  # let the workers get into training
            return process, workers
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"no two workers started within 60 s: {process.communicate()[1]}")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _wait_gone(workers: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while alive_processes(workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive_processes(workers)


def test_killing_the_parent_alone_stops_its_workers(tmp_path):
    process, workers = _start(tmp_path / "run")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    left = _wait_gone(workers, 5.0)
    for pid in left:  # do not leave them running if the test fails
        subprocess.run(["kill", "-9", str(pid)], check=False)
    assert not left, f"workers {sorted(left)} outlived their killed parent"
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_ctrl_c_twice_stops_at_once_and_writes_nothing(tmp_path):
    process, workers = _start(tmp_path / "run")
    process.send_signal(signal.SIGINT)
    time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("the run did not stop within 20 s of Ctrl-C") from None
    left = _wait_gone(workers, 5.0)
    for pid in left:
        subprocess.run(["kill", "-9", str(pid)], check=False)
    assert not left, f"workers {sorted(left)} outlived the interrupted run"
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
