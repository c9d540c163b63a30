"""The monitor's append-only CSV: one record (all rows of one check) per check.

It reuses the sweep store's log machinery (``lipflow.sweep.store``): a record is appended with
one ``write`` on an ``O_APPEND`` descriptor, the log is locked against a second writer, fsync'ed
at most once a second and on close, and a reader accepts a record only when it is complete, so
a kill at any moment loses at most the check being written; reopening drops a torn tail and
continues (``resume``: checks already logged are not logged again).

Columns: run, step, metric, probe ("in", "ood" or "-"), layer, value (``repr`` of a float64, so
inf/nan stay visible), kind ("exact", "estimate", "bound" or "not computed"), working (the
working precision) and the lipflow version.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from pathlib import Path

import lipflow
from lipflow.sweep.store import LogScan, append_log, rows_to_csv_text, scan_log, write_all

__all__ = ["COLUMNS", "MonitorLog"]

COLUMNS = ("run", "step", "metric", "probe", "layer", "value", "kind", "working", "lipflow")
HEADER = (",".join(COLUMNS) + "\n").encode()
FSYNC_INTERVAL_S = 1.0


class MonitorLog:
    """An open monitor log at ``path`` for records with exactly ``metrics`` (in order)."""

    def __init__(self, path: str | Path, metrics: tuple[str, ...]) -> None:
        self.path, self.metrics = Path(path), tuple(metrics)
        self._stack = ExitStack()
        busy = f"{self.path} is being written by another monitor; give each run its own log file"
        self._descriptor = self._stack.enter_context(append_log(self.path, self._scan, HEADER, busy))
        self.records = self._scan(self.path.read_bytes()).records
        self._last_sync = time.monotonic()

    def _scan(self, data: bytes) -> LogScan:
        return scan_log(data, self.metrics, columns=COLUMNS, key="step")

    def logged_steps(self) -> set[int]:
        return {int(step) for step in self.records}

    def write(self, rows: list[dict[str, str]]) -> None:
        """Append one complete record (the rows of one check)."""
        full = [{"lipflow": lipflow.__version__, **row} for row in rows]
        write_all(self._descriptor, rows_to_csv_text(full, header=False, columns=COLUMNS).encode())
        now = time.monotonic()
        if now - self._last_sync >= FSYNC_INTERVAL_S:
            os.fsync(self._descriptor)
            self._last_sync = now

    def close(self) -> None:
        self._stack.close()
