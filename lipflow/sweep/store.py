"""The result store of a sweep: an append-only CSV log, safe against a kill at any moment.

Layout of a sweep folder::

    spec.toml     the validated spec (``lipflow sweep --resume DIR`` reads it)
    cells.csv     the log: one record per finished cell, in completion order
    results.csv   the finished cells in grid order (written at the end of a run and by the report)

Both CSV files have the same tidy columns (:data:`COLUMNS`), one row per cell x metric, and
open in any spreadsheet, pandas, R or the ``csv`` module with no extra dependency.

A record (all rows of one cell) is appended with a single ``write`` to a file opened with
``O_APPEND``; once that call returns the kernel holds the bytes, so killing the process at
any later moment loses nothing. A kill can only interrupt the record being written: the
reader accepts a cell only when its record is complete (every metric of the spec, newline
terminated), and the next run truncates the log back to its last complete record before
appending. A lock on the log keeps two runs from appending to one folder at once, so no cell
is stored twice. The log is fsync'ed at most once a second and when a run ends (an fsync per
cell costs ~10 ms, more than a Figure-1 cell), which bounds what a power cut can take; after
one, the torn tail is dropped in the same way. Values are written with ``repr``
(shortest round trip), so ``inf``/``nan`` stay visible and re-reading gives the same float64.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lipflow.errors import LipflowError
from lipflow.io import atomic_write_text
from lipflow.sweep.cells import CellResult
from lipflow.sweep.spec import SweepSpec, load_spec, spec_to_toml

__all__ = [
    "AXIS_COLUMNS",
    "COLUMNS",
    "VERSION_COLUMNS",
    "LogScan",
    "ResultStore",
    "append_log",
    "cell_rows",
    "read_csv_rows",
    "rows_to_csv_text",
    "scan_log",
    "write_all",
]

AXIS_COLUMNS = ("block", "conditioner", "scale", "inputs", "seed", "precision", "depth")
VERSION_COLUMNS = ("lipflow", "numpy", "autograd", "mpmath")
COLUMNS = (
    "sweep", "cell", *AXIS_COLUMNS, "metric", "value", "reference", "dim", "samples", "semantics",
    *VERSION_COLUMNS,
)
HEADER = (",".join(COLUMNS) + "\n").encode()

SPEC_FILE = "spec.toml"
LOG_FILE = "cells.csv"
RESULTS_FILE = "results.csv"
FSYNC_INTERVAL_S = 1.0


def rows_to_csv_text(
    rows: Iterable[dict[str, str]], *, header: bool = True, columns: Sequence[str] = COLUMNS
) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise LipflowError(f"{path} is not a lipflow sweep result file (columns {reader.fieldnames})")
        return list(reader)


@dataclass(frozen=True)
class LogScan:
    """What the log holds: complete records by cell key (first one wins) and the byte length
    of the log up to the end of its last complete record."""

    records: dict[str, list[dict[str, str]]]
    clean_length: int
    torn_bytes: int


def scan_log(data: bytes, metrics: Sequence[str], *, columns: Sequence[str] = COLUMNS, key: str = "cell") -> LogScan:
    """Parse log bytes; a record counts only with exactly ``metrics`` in order and a final newline.

    ``columns`` and ``key`` (the column naming a record) default to the sweep log's; other
    append-only logs (e.g. the training monitor's) reuse the same format rules with their own.
    """
    columns = tuple(columns)
    header = (",".join(columns) + "\n").encode()
    if not data.startswith(header):
        return LogScan({}, 0, len(data))
    records: dict[str, list[dict[str, str]]] = {}
    position = clean = len(header)
    current: list[dict[str, str]] = []
    expected = list(metrics)

    def close(end: int) -> int:
        nonlocal current
        if current and [row["metric"] for row in current] == expected:
            records.setdefault(current[0][key], current)
            current = []
            return end
        current = []
        return -1

    while position < len(data):
        end = data.find(b"\n", position)
        if end < 0:
            break  # a torn last line
        try:
            fields = next(csv.reader([data[position:end].decode("utf-8")]))
        except (UnicodeDecodeError, csv.Error, StopIteration):
            fields = []
        row = dict(zip(columns, fields, strict=False)) if len(fields) == len(columns) else None
        if row is None or row["metric"] not in expected:
            current = []
        else:
            if current and (row[key] != current[0][key] or row["metric"] == expected[0]):
                current = []  # a new record began before the last one completed
            current.append(row)
            if len(current) == len(expected):
                finished = close(end + 1)
                clean = finished if finished > 0 else clean
        position = end + 1
    return LogScan(records, clean, len(data) - clean)


class ResultStore:
    """A sweep folder: the spec, the append-only log of finished cells, the consolidated table."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.spec_path = self.root / SPEC_FILE
        self.log_path = self.root / LOG_FILE
        self.results_path = self.root / RESULTS_FILE

    # ---- opening --------------------------------------------------------------------------------
    @classmethod
    def create_or_open(cls, root: str | Path, spec: SweepSpec) -> ResultStore:
        """Open ``root`` for ``spec``: a new folder gets the spec; an existing one must hold the same."""
        store = cls(root)
        if store.root.exists() and not store.root.is_dir():
            raise LipflowError(f"--out {str(store.root)!r} is a file; give a folder")
        store.remove_temporaries()
        if store.spec_path.exists():
            saved = store.load_spec().to_mapping()
            if saved != spec.to_mapping():
                differing = [k for k, v in spec.to_mapping().items() if saved.get(k) != v]
                raise LipflowError(
                    f"{store.root} holds a different sweep (keys that differ: {', '.join(differing)}); "
                    f"continue it with `lipflow sweep --resume {store.root}` or choose another --out"
                )
        elif store.root.exists() and any(store.root.iterdir()):
            raise LipflowError(
                f"--out {str(store.root)!r} exists and is not a sweep folder (no {SPEC_FILE}); choose an empty "
                "or new folder"
            )
        else:
            atomic_write_text(store.spec_path, spec_to_toml(spec))
        return store

    def remove_temporaries(self) -> None:
        """Delete temporary files a killed run left while replacing spec.toml, results.csv or
        summary.* (``.NAME.XXXX.tmp``; the finished files themselves are never touched)."""
        if not self.root.is_dir():
            return
        for name in (SPEC_FILE, RESULTS_FILE, "summary.csv", "summary.md"):
            for path in self.root.glob(f".{name}.*.tmp"):
                path.unlink(missing_ok=True)

    @classmethod
    def open_existing(cls, root: str | Path) -> ResultStore:
        store = cls(root)
        if not store.spec_path.is_file():
            raise LipflowError(
                f"{str(store.root)!r} is not a sweep folder (no {SPEC_FILE}); start one with "
                "`lipflow sweep SPEC.toml --out DIR`"
            )
        return store

    def load_spec(self) -> SweepSpec:
        return load_spec(self.spec_path)

    # ---- reading --------------------------------------------------------------------------------
    def scan(self, spec: SweepSpec) -> LogScan:
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            data = b""
        return scan_log(data, spec.metrics)

    def finished(self, spec: SweepSpec) -> set[str]:
        """Keys of the cells of ``spec`` with a complete record."""
        keys = {cell.key for cell in spec.cells}
        return set(self.scan(spec).records) & keys

    def rows(self, spec: SweepSpec) -> list[dict[str, str]]:
        """Rows of every finished cell, in the spec's grid order."""
        records = self.scan(spec).records
        return [row for cell in spec.cells for row in records.get(cell.key, ())]

    def consolidate(self, spec: SweepSpec) -> Path:
        """Write ``results.csv`` (all finished cells, grid order) atomically and return its path."""
        atomic_write_text(self.results_path, rows_to_csv_text(self.rows(spec)))
        return self.results_path

    def stored_versions(self, spec: SweepSpec) -> set[tuple[str, ...]]:
        """The distinct (lipflow, numpy, autograd, mpmath) versions recorded by finished cells."""
        return {tuple(rows[0][name] for name in VERSION_COLUMNS) for rows in self.scan(spec).records.values()}

    # ---- writing --------------------------------------------------------------------------------
    @contextmanager
    def appender(self, spec: SweepSpec) -> Iterator[LogAppender]:
        """Exclusive append access: drops a torn tail, then yields a :class:`LogAppender`."""
        busy = (f"{self.root} is being written by another `lipflow sweep`; wait for it to finish "
                "(or stop it) before running this sweep there again")
        with append_log(self.log_path, lambda data: scan_log(data, spec.metrics), HEADER, busy) as descriptor:
            yield LogAppender(descriptor, spec)


@contextmanager
def append_log(path: Path, scan: Callable[[bytes], LogScan], header: bytes, busy: str) -> Iterator[int]:
    """Exclusive append access to a log: lock it (``busy`` is the error when another process
    holds it), drop a torn tail found by ``scan`` (or start it with ``header``), yield the
    ``O_APPEND`` descriptor for :func:`write_all`, fsync on exit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LipflowError(busy) from None
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b""
        found = scan(data)
        if found.clean_length == 0:
            os.ftruncate(descriptor, 0)
            write_all(descriptor, header)
        elif found.torn_bytes:
            os.ftruncate(descriptor, found.clean_length)
        yield descriptor
        os.fsync(descriptor)
    finally:
        os.close(descriptor)  # releases the lock


class LogAppender:
    """Appends one complete record per call; fsyncs at most every :data:`FSYNC_INTERVAL_S`."""

    def __init__(self, descriptor: int, spec: SweepSpec) -> None:
        self._descriptor = descriptor
        self._spec = spec
        self._last_sync = time.monotonic()

    def write(self, result: CellResult) -> None:
        write_all(self._descriptor, rows_to_csv_text(cell_rows(self._spec, result), header=False).encode())
        now = time.monotonic()
        if now - self._last_sync >= FSYNC_INTERVAL_S:
            os.fsync(self._descriptor)
            self._last_sync = now


def write_all(descriptor: int, data: bytes) -> None:
    """One ``write`` call for a record (records are a few hundred bytes); loop only if short."""
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view):]


def cell_rows(spec: SweepSpec, result: CellResult) -> Sequence[dict[str, str]]:
    """The tidy rows of one cell: one per metric, in the spec's metric order."""
    cell = result.cell
    common = {
        "sweep": spec.name,
        "cell": cell.key,
        **{axis: str(getattr(cell, axis)) for axis in AXIS_COLUMNS},
        "reference": spec.reference,
        "dim": str(spec.dim),
        "samples": "1" if cell.inputs == "ones" else str(spec.samples),
        "semantics": result.semantics,
        **{name: result.versions[name] for name in VERSION_COLUMNS},
    }
    return [{**common, "metric": metric, "value": repr(result.values[metric])} for metric in spec.metrics]
