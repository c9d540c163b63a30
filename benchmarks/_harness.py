"""Shared benchmark plumbing: the machine, the exact command, best-of-N CPU times, targets.

Every benchmark prints :func:`header` first (cores, CPU, BLAS library and its threads, the
exact command) and times with :func:`best_cpu` (CPU time of this process, best of at least 5
repeats). Benchmarks with targets expose ``targets(quick) -> list[Target]``, which
``benchmarks/run_all.py`` collects into one JSON file of ratios.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

MIN_REPEATS = 5


@dataclass
class Target:
    """One measured ratio and its target: met when ``ratio <= limit`` (``"<="``) or
    ``ratio >= limit`` (``">="``); ``extra_ok`` carries side conditions (e.g. correct bits)."""

    name: str
    ratio: float
    limit: float
    direction: str = "<="
    detail: str = ""
    extra_ok: bool = True

    @property
    def met(self) -> bool:
        if not (math.isfinite(self.ratio) and self.extra_ok):
            return False
        return self.ratio <= self.limit if self.direction == "<=" else self.ratio >= self.limit

    def as_dict(self) -> dict:
        return {**asdict(self), "met": self.met}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """Cores, CPU, Python / NumPy versions and the BLAS libraries with their thread counts."""
    import numpy as np

    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "thread_env": {v: os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    try:
        import threadpoolctl

        info["blas"] = [
            {key: pool.get(key) for key in ("internal_api", "version", "num_threads", "architecture")}
            for pool in threadpoolctl.threadpool_info()
        ]
    except ImportError:
        info["blas"] = "threadpoolctl not installed (pip install threadpoolctl)"
    return info


def fixed_allocator(mmap_threshold: int = 64 << 20, trim_threshold: int = 256 << 20) -> str:
    """Fix glibc's malloc thresholds for the rest of this process (``mallopt``): buffers up to
    ``mmap_threshold`` bytes come from the heap and freed memory is kept for reuse. With the
    default, dynamic thresholds, whether a fresh multi-megabyte temporary costs a page fault per
    4 KiB on first touch depends on what the process happened to free before, which moved one
    solver's CPU time by up to 2x (and a measured ratio by 1.4x) between runs of the same
    benchmark. Returns a line for the report (empty where the C library is not glibc)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
        done = libc.mallopt(m_mmap_threshold, mmap_threshold) == 1
        done = done and libc.mallopt(m_trim_threshold, trim_threshold) == 1
    except (OSError, AttributeError):
        return ""
    if not done:
        return ""
    return (f"allocator: glibc malloc thresholds fixed (mmap {mmap_threshold >> 20} MiB, trim "
            f"{trim_threshold >> 20} MiB), so page faults do not depend on the run's history")


#: set when this module is imported, so that every benchmark (and both sides of each ratio)
#: runs under the same allocator settings from its first allocation on
ALLOCATOR = fixed_allocator()


def command() -> str:
    """The exact command that ran this process."""
    return shlex.join([Path(sys.executable).name, *sys.argv])


def header(description: str, timing: str = "CPU time of this process") -> None:
    """Print what is measured, on which machine, by which command (``timing`` names the clock,
    e.g. synchronised wall time for GPU work)."""
    m = machine()
    blas = m["blas"]
    if isinstance(blas, list):
        blas = ", ".join(f"{b['internal_api']} {b['version']} ({b['num_threads']} threads)" for b in blas) or "none"
    print(description)
    print(f"machine: {m['cpu']}, {m['cores_usable']}/{m['cores']} cores, python {m['python']}, numpy {m['numpy']}, "
          f"BLAS: {blas}")
    print(f"command: {command()}")
    if ALLOCATOR:
        print(ALLOCATOR)
    print(f"timings: {timing}, best of >= 5 repeats; ratios measured side by side in one run")


def best_cpu(run: Callable[[], object], repeats: int = MIN_REPEATS) -> float:
    """Best CPU time of ``run`` over ``max(repeats, 5)`` calls (after one untimed warm-up)."""
    run()
    best = math.inf
    for _ in range(max(repeats, MIN_REPEATS)):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best


def best_wall(run: Callable[[], object], repeats: int) -> float:
    """Best wall-clock time of ``run`` over ``repeats`` calls (for GPU work synchronised inside
    ``run``, and for scripts that report wall time)."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def per_element(seconds: float, elements: int) -> str:
    """CPU microseconds per element (point), for the tables."""
    return f"{seconds / max(elements, 1) * 1e6:9.2f}"


def print_targets(targets: list[Target]) -> None:
    for t in targets:
        print(f"target {t.name}: {t.ratio:.3g} {t.direction} {t.limit:g} -> {'met' if t.met else 'NOT met'}"
              + (f" ({t.detail})" if t.detail else ""))


def write_json(path: str | Path, payload: dict) -> None:
    """Write ``payload`` atomically (temporary file, then os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        json.dump(payload, handle, indent=2, default=str)
        temporary = handle.name
    os.replace(temporary, path)
