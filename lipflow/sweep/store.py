"""The result store of a sweep: an append-only CSV log, safe against a kill at any moment.

Layout of a sweep folder::

    spec.toml     the validated spec (``lipflow sweep --resume DIR`` reads it)
    cells.csv     the log: one record per finished cell, in completion order
    results.csv   the finished cells in grid order (written at the end of a run and by the report)
    .lock         the writer's lock and its owner (:mod:`lipflow.sweep.lock`)

Both CSV files have the same tidy columns (:data:`COLUMNS`), one row per cell x metric, and
open in any spreadsheet, pandas, R or the ``csv`` module with no extra dependency.

A record (all rows of one cell) is appended with a single ``write`` to a file opened with
``O_APPEND``; once that call returns the kernel holds the bytes, so killing the process at
any later moment loses nothing. A kill can only interrupt the record being written: the
reader accepts a cell only when its record is complete (every metric of the spec, newline
terminated), and the next run truncates the log back to its last complete record before
appending. The folder's lock keeps two runs from appending to one folder at once, so no cell
is stored twice. The log is fsync'ed at most once a second and when a run ends (an fsync per
cell costs ~10 ms, more than a Figure-1 cell), which bounds what a power cut can take; after
one, the torn tail is dropped in the same way. Values are written with ``repr``
(shortest round trip), so ``inf``/``nan`` stay visible and re-reading gives the same float64.

Nothing is lost to a bad file (:mod:`lipflow.sweep.scan`): a byte-order mark and CRLF line
ends are read as such; a line that is not a valid record (a hand-edited value ``abc``, a
foreign header) stops every writer with an error naming the file and line; cells that only
``results.csv`` still holds (the log deleted) are read from it and put back into the log; and
``results.csv`` is never replaced by a table with fewer rows.
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
from lipflow.sweep.lock import LOCK_FILE, folder_lock
from lipflow.sweep.scan import (
    AXIS_COLUMNS,
    COLUMNS,
    HEADER,
    VERSION_COLUMNS,
    LogScan,
    describe_problems,
    normalise,
    scan_log,
)
from lipflow.sweep.spec import SweepSpec, load_spec, spec_to_toml

__all__ = [
    "AXIS_COLUMNS",
    "COLUMNS",
    "HEADER",
    "LOCK_FILE",
    "VERSION_COLUMNS",
    "LogScan",
    "ResultStore",
    "StoreContents",
    "append_log",
    "cell_rows",
    "read_csv_rows",
    "rows_to_csv_text",
    "scan_log",
    "write_all",
]

SPEC_FILE = "spec.toml"
LOG_FILE = "cells.csv"
RESULTS_FILE = "results.csv"
FSYNC_INTERVAL_S = 1.0


def rows_to_csv_text(rows: Iterable[dict[str, str]], *, header: bool = True, columns: Sequence[str] = COLUMNS) -> str:
    """CSV text of ``rows`` (LF line ends), with the header line unless ``header=False``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a sweep CSV file (a UTF-8 byte-order mark and CRLF line ends are accepted)."""
    text = normalise(Path(path).read_bytes()).decode("utf-8", errors="replace")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise LipflowError(f"{path} is not a lipflow sweep result file (columns {reader.fieldnames})")
    return list(reader)


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
        for name in (SPEC_FILE, LOG_FILE, RESULTS_FILE, "summary.csv", "summary.md"):
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
    def _read(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise LipflowError(f"cannot read {path} ({error.strerror or error}); it must be a readable file") from None

    def contents(self, spec: SweepSpec, *, strict: bool = True) -> StoreContents:
        """Every finished cell: the log's records, then cells that only ``results.csv`` still holds.

        With ``strict`` (for anything that writes), a line of either file that is not a valid
        record raises a :class:`LipflowError` naming the file, the line and how to recover.
        """
        log = scan_log(self._read(self.log_path) or b"", spec.metrics)
        data = self._read(self.results_path)
        results = None if data is None else scan_log(data, spec.metrics)
        if strict and log.problems:
            raise LipflowError(
                "the cell store has lines that are not finished cells: "
                f"{describe_problems(self.log_path, log.problems)}. "
                f"Fix or delete those lines (a cell whose lines are deleted is recomputed by `lipflow sweep --resume "
                f"{self.root}`); nothing was written"
            )
        if strict and results is not None and results.problems:
            raise LipflowError(
                f"{describe_problems(self.results_path, results.problems)}. results.csv is rebuilt from "
                f"{LOG_FILE}: fix those lines, or move it away if {LOG_FILE} holds every cell; nothing was written"
            )
        if strict:
            _check_axes(spec, self.log_path, log)
            if results is not None:
                _check_axes(spec, self.results_path, results)
        records = dict(log.records)
        recovered = []
        if results is not None:
            for key in results.order:
                if key not in records:
                    records[key] = results.records[key]
                    recovered.append(key)
        return StoreContents(records, log, results, recovered)

    def scan(self, spec: SweepSpec) -> LogScan:
        return scan_log(self._read(self.log_path) or b"", spec.metrics)

    def finished(self, spec: SweepSpec) -> set[str]:
        """Keys of the cells of ``spec`` with a complete, valid record (in the log or results.csv)."""
        keys = {cell.key for cell in spec.cells}
        return set(self.contents(spec, strict=False).records) & keys

    def rows(self, spec: SweepSpec) -> list[dict[str, str]]:
        """Rows of every finished cell, in the spec's grid order (refuses a store with bad lines)."""
        records = self.contents(spec).records
        return [row for cell in spec.cells for row in records.get(cell.key, ())]

    def consolidate(self, spec: SweepSpec) -> Path:
        """Write ``results.csv`` (all finished cells, grid order) atomically and return its path.

        Never replaces a ``results.csv`` by one with fewer rows or without a cell it held: such
        a store is refused with a :class:`LipflowError` saying what it would have dropped.
        """
        contents = self.contents(spec)
        grid = {cell.key for cell in spec.cells}
        rows = [row for cell in spec.cells for row in contents.records.get(cell.key, ())]
        old = contents.results
        foreign = [key for key in old.order if key not in grid] if old is not None else []
        if old is not None and (foreign or old.rows > len(rows)):
            cells = "cell that is" if len(foreign) == 1 else "cells that are"
            why = (f"it holds {len(foreign)} {cells} not in this sweep's grid (e.g. {foreign[0]})" if foreign
                   else f"{LOG_FILE} holds fewer cells")
            raise LipflowError(
                f"refusing to replace {self.results_path} ({old.rows} rows) by {len(rows)} rows: {why}. "
                f"Move results.csv away first if that is really meant"
            )
        atomic_write_text(self.results_path, rows_to_csv_text(rows))
        return self.results_path

    def stored_versions(self, spec: SweepSpec) -> set[tuple[str, ...]]:
        """The distinct (lipflow, numpy, autograd, mpmath) versions recorded by finished cells."""
        records = self.contents(spec, strict=False).records
        return {tuple(rows[0][name] for name in VERSION_COLUMNS) for rows in records.values()}

    # ---- writing --------------------------------------------------------------------------------
    @contextmanager
    def appender(self, spec: SweepSpec) -> Iterator[LogAppender]:
        """Exclusive append access (the folder's lock): refuses a log with bad lines, drops a torn
        tail, rewrites a BOM/CRLF log in plain form and puts back cells only results.csv still
        has, then yields a :class:`LogAppender`."""
        self.root.mkdir(parents=True, exist_ok=True)
        with folder_lock(self.root) as taken_over:
            contents = self.contents(spec)
            log = contents.log
            rewrite = bool(contents.recovered) or not log.canonical or (log.clean_length == 0 and log.torn_bytes > 0)
            if rewrite:
                keys = [*log.order, *contents.recovered]
                atomic_write_text(self.log_path, rows_to_csv_text(row for key in keys for row in contents.records[key]))
            descriptor = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            try:
                size = os.fstat(descriptor).st_size
                if size == 0:
                    write_all(descriptor, HEADER)
                elif log.torn_bytes and not rewrite:
                    os.ftruncate(descriptor, log.clean_length)
                appender = LogAppender(descriptor, spec)
                appender.taken_over = taken_over
                yield appender
                os.fsync(descriptor)
            finally:
                os.close(descriptor)


@dataclass(frozen=True)
class StoreContents:
    """What a sweep folder holds: ``records`` by cell key, the scans of both files, and the keys
    of cells only ``results.csv`` holds (``recovered``, e.g. after the log was deleted)."""

    records: dict[str, list[dict[str, str]]]
    log: LogScan
    results: LogScan | None
    recovered: list[str]


class LogAppender:
    """Appends one complete record per call; fsyncs at most every :data:`FSYNC_INTERVAL_S`."""

    def __init__(self, descriptor: int, spec: SweepSpec) -> None:
        self._descriptor = descriptor
        self._spec = spec
        self._last_sync = time.monotonic()
        self.taken_over: object = None  # the dead owner whose lock was taken over, if any

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


def _check_axes(spec: SweepSpec, path: Path, scan: LogScan) -> None:
    """Refuse a record of a grid cell whose sweep name or axis values differ from the spec's
    (a hand-edited seed or precision): the cell key would vouch for values it was not run with."""
    for cell in spec.cells:
        rows = scan.records.get(cell.key)
        if not rows:
            continue
        expected = {"sweep": spec.name, **{axis: str(getattr(cell, axis)) for axis in AXIS_COLUMNS}}
        for row in rows:
            wrong = [f"{column} is {row[column]!r}, the spec says {value!r}"
                     for column, value in expected.items() if row[column] != value]
            if wrong:
                raise LipflowError(
                    f"{path}: the record of cell {cell.key} (metric {row['metric']}) does not match the sweep's "
                    f"spec: {'; '.join(wrong)}. Fix or delete that cell's lines (a deleted cell is recomputed by "
                    f"`lipflow sweep --resume {path.parent}`); nothing was written"
                )


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


@contextmanager
def append_log(path: Path, scan: Callable[[bytes], LogScan], header: bytes, busy: str) -> Iterator[int]:
    """Exclusive append access to a single-file log with the store's rules (the training
    monitor's): lock the file (``busy`` is the error while another process holds it), refuse a
    log ``scan`` finds problems in, drop a torn tail (or start the file with ``header``), rewrite
    a BOM/CRLF file in plain form, then yield the ``O_APPEND`` descriptor for :func:`write_all`;
    fsync on exit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LipflowError(busy) from None
        raw = path.read_bytes()
        found = scan(raw)
        if found.problems:
            raise LipflowError(f"{describe_problems(path, found.problems)}: fix or delete those lines, "
                               "or give a new log file; nothing was written")
        if not found.canonical:
            atomic_write_text(path, normalise(raw)[: found.clean_length].decode("utf-8"))
            os.close(descriptor)
            descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if found.clean_length == 0:
            os.ftruncate(descriptor, 0)
            write_all(descriptor, header)
        elif found.torn_bytes:
            os.ftruncate(descriptor, found.clean_length)
        yield descriptor
        os.fsync(descriptor)
    finally:
        os.close(descriptor)  # releases the lock
