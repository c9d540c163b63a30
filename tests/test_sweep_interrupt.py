"""Interrupting a sweep with real signals: workers die with their parent, Ctrl-C stops cleanly,
a dead owner's lock is taken over, and ``--resume`` ends with the uninterrupted results.csv."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lipflow.errors import LipflowError
from lipflow.sweep import load_spec, run_sweep
from lipflow.sweep.lock import LOCK_FILE, process_start
from lipflow.sweep.store import ResultStore
from tests.helpers import alive_processes, descendants

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find worker processes")

# cells of ~0.1-0.5 s (an mp residual inverse), so signals arrive while cells are in flight
SPEC = """\
name = "signals"
samples = 4
metrics = ["recon_error", "cond"]

[axes]
block = ["residual"]
seed = [0, 1, 2]
precision = ["mp20"]
depth = "1:5"
"""
TOTAL = 15


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("whole")
    (folder / "spec.toml").write_text(SPEC)
    run = run_sweep(load_spec(folder / "spec.toml"), folder / "run", workers=2, progress=False)
    return run.store.results_path.read_bytes()


class Sweep:
    """``lipflow sweep`` in its own process group, its stderr collected with arrival times."""

    def __init__(self, folder: Path) -> None:
        (folder / "spec.toml").write_text(SPEC)
        self.out = folder / "run"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lipflow", "sweep", str(folder / "spec.toml"), "--out", str(self.out),
             "--workers", "2", "--no-progress", "--no-report"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append((time.monotonic(), line))

    def stderr(self) -> str:
        return "".join(line for _, line in self.lines)

    def wait_for_cells(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if (self.out / "spec.toml").exists():
                store = ResultStore(self.out)
                if len(store.finished(store.load_spec())) >= count:
                    return
            time.sleep(0.01)
        raise AssertionError(f"the sweep did not store {count} cells: {self.stderr()}")

    def descendants(self) -> set[int]:
        return descendants(self.process.pid)

    def line_time(self, text: str, timeout: float = 5) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for moment, line in self.lines:
                if text in line:
                    return moment
            time.sleep(0.005)
        raise AssertionError(f"{text!r} never appeared on stderr: {self.stderr()}")

    def finish(self, timeout: float) -> float:
        """Wait for the exit; return how long it took."""
        start = time.monotonic()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(f"the sweep did not exit within {timeout} s: {self.stderr()}") from None
        self._reader.join(timeout=5)
        return time.monotonic() - start


def _resume_and_compare(out: Path, reference: bytes) -> str:
    resumed = subprocess.run(
        [sys.executable, "-m", "lipflow", "sweep", "--resume", str(out), "--no-progress", "--no-report"],
        capture_output=True, text=True, timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "results.csv").read_bytes() == reference
    return resumed.stdout


@pytest.mark.slow
def test_sigkill_of_the_parent_alone_ends_its_workers_and_frees_the_folder(tmp_path, reference):
    sweep = Sweep(tmp_path)
    sweep.wait_for_cells(2)
    workers = sweep.descendants()
    assert workers, "the pool has no worker processes"
    killed = time.monotonic()
    os.kill(sweep.process.pid, signal.SIGKILL)  # the parent only, not its group
    sweep.finish(timeout=10)
    while alive_processes(workers) and time.monotonic() - killed < 5:
        time.sleep(0.01)
    assert not alive_processes(workers), f"workers {sorted(alive_processes(workers))} outlived their parent"
    _resume_and_compare(sweep.out, reference)


@pytest.mark.slow
def test_first_ctrl_c_finishes_the_cells_in_flight_and_resume_completes(tmp_path, reference):
    sweep = Sweep(tmp_path)
    sweep.wait_for_cells(2)
    sent = time.monotonic()
    os.killpg(sweep.process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
    assert sweep.line_time("stopping: ") - sent < 1.0
    assert "cells in flight" in sweep.stderr() or "cell in flight" in sweep.stderr()
    sweep.finish(timeout=30)
    assert sweep.process.returncode == 130, sweep.stderr()
    assert "Traceback" not in sweep.stderr()
    store = ResultStore(sweep.out)
    spec = store.load_spec()
    stored = len(store.finished(spec))
    assert f"interrupted: {stored} of {TOTAL} cells are stored" in sweep.stderr()
    assert store.scan(spec).torn_bytes == 0 and not store.scan(spec).problems
    assert f"{TOTAL - stored} computed now, {stored} already stored" in _resume_and_compare(sweep.out, reference)


@pytest.mark.slow
def test_second_ctrl_c_exits_within_two_seconds_leaving_a_consistent_store(tmp_path, reference):
    sweep = Sweep(tmp_path)
    sweep.wait_for_cells(1)
    workers = sweep.descendants()
    os.killpg(sweep.process.pid, signal.SIGINT)
    sweep.line_time("stopping: ")
    os.killpg(sweep.process.pid, signal.SIGINT)
    took = sweep.finish(timeout=10)
    assert took < 2.0, f"the second Ctrl-C took {took:.2f} s to exit"
    assert sweep.process.returncode == 130 and "Traceback" not in sweep.stderr(), sweep.stderr()
    time.sleep(0.2)
    assert not alive_processes(workers)
    store = ResultStore(sweep.out)
    assert not store.scan(store.load_spec()).problems
    _resume_and_compare(sweep.out, reference)


def _lock_holder(folder: Path, owner_pid: int) -> subprocess.Popen:
    """A process that holds the folder's lock with ``owner_pid`` on record (an orphan of it)."""
    record = {"pid": owner_pid, "host": socket.gethostname(), "process_start": process_start(owner_pid),
              "locked_at": "2000-01-01T00:00:00Z"}
    code = (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(folder / LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        f"os.ftruncate(fd, 0); os.write(fd, {json.dumps(record).encode()!r})\n"
        "print('ready', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    return holder


def test_the_lock_names_a_live_owner_and_is_taken_over_from_a_dead_one(tmp_path):
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC.replace('depth = "1:5"', "depth = [1]").replace("[0, 1, 2]", "[0]"))
    spec = load_spec(spec_path)
    folder = tmp_path / "run"
    ResultStore.create_or_open(folder, spec)
    holder = _lock_holder(folder, os.getpid())  # the owner on record (this process) is alive
    try:
        with pytest.raises(LipflowError, match=rf"being written by another `lipflow sweep` \(pid {os.getpid()} on "):
            run_sweep(spec, folder, workers=1, progress=False)
    finally:
        holder.kill()
        holder.wait()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = _lock_holder(folder, dead.pid)  # the owner on record is gone; its orphan holds the lock
    try:
        with pytest.warns(RuntimeWarning, match=rf"took over the lock of pid {dead.pid} "):
            run = run_sweep(spec, folder, workers=1, progress=False)
        assert run.computed == 1
        record = json.loads((folder / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    finally:
        holder.kill()
        holder.wait()
