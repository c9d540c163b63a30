"""Run a sweep: the cells not yet in the store, on a local process pool (or Dask), with progress.

Workers compute; only the calling process writes the store, one cell at a time, as results
arrive. Cells are submitted in grid order (depth fastest), which lets each worker extend its
memoised shallower cells instead of starting every depth from scratch.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from lipflow.errors import LipflowError
from lipflow.sweep.cells import CellResult, ModelSettings, compute_cell, versions
from lipflow.sweep.spec import Cell, SweepSpec
from lipflow.sweep.store import VERSION_COLUMNS, ResultStore
from lipflow.sweep.workers import StopRequest, worker_initializer

__all__ = [
    "LocalRun",
    "SweepInterrupted",
    "SweepRun",
    "chunk_size",
    "compute_all",
    "compute_cells",
    "default_workers",
    "iter_local",
    "model_settings",
    "run_sweep",
]


@dataclass(frozen=True)
class SweepRun:
    """What a run did: cells in the grid, already stored before it, computed by it."""

    store: ResultStore
    total: int
    skipped: int
    computed: int


def model_settings(spec: SweepSpec) -> ModelSettings:
    return ModelSettings(
        dim=spec.dim,
        samples=spec.samples,
        hidden=spec.hidden,
        activation=spec.activation,
        coeff=spec.coeff,
        reference=spec.reference,
        metrics=spec.metrics,
    )


def default_workers() -> int:
    """The cores this process may use (both on a 2-core machine)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _check_workers(workers: int | None) -> int:
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise LipflowError(f"workers must be a positive integer, got {workers!r}")
    return workers


#: at most this many cells travel to a worker in one task (fewer when a sweep is small)
MAX_CHUNK = 16


def chunk_size(cells: int, workers: int) -> int:
    """Cells per task: about 16 tasks per worker, between 1 and :data:`MAX_CHUNK`.

    Cheap cells (Figure 1's take ~3 ms) would otherwise spend as long in inter-process traffic
    as in computing; expensive sweeps have few cells and get one cell per task.
    """
    return max(1, min(MAX_CHUNK, cells // (16 * workers)))


def iter_local(cells: Sequence[Cell], settings: ModelSettings, workers: int) -> LocalRun:
    """Results of ``cells`` in completion order; ``workers=1`` computes in this process.

    Consecutive cells (grid order: same network, increasing depth) travel together, so each
    worker extends its memoised shallower cells. The worker processes are started (and every
    task submitted) before this returns, so a progress-bar thread started afterwards is never
    inherited by a forked worker. Workers die with this process
    (:func:`lipflow.sweep.workers.worker_initializer`); :meth:`LocalRun.request_stop` lets the
    cells in flight finish and drops the queued ones.
    """
    return LocalRun(cells, settings, workers)


class LocalRun:
    """An iterator over cell results from this process or a local pool, which can be stopped."""

    def __init__(self, cells: Sequence[Cell], settings: ModelSettings, workers: int) -> None:
        self.stop_requested = False
        self._computing = False
        self._drained = False
        self._pool: ProcessPoolExecutor | None = None
        self._sizes: dict[Future[list[CellResult]], int] = {}
        if workers == 1 or len(cells) <= 1:
            self._results = self._serial(cells, settings)
            return
        size = chunk_size(len(cells), workers)
        chunks = [tuple(cells[i : i + size]) for i in range(0, len(cells), size)]
        self._pool = ProcessPoolExecutor(max_workers=min(workers, len(chunks)), initializer=worker_initializer,
                                         initargs=(os.getpid(),))
        try:
            self._sizes = {self._pool.submit(compute_cells, chunk, settings): len(chunk) for chunk in chunks}
        except BaseException:
            self._kill()
            raise
        self._results = self._parallel()

    def __iter__(self) -> Iterator[CellResult]:
        return self._results

    def __next__(self) -> CellResult:
        return next(self._results)

    def close(self) -> None:
        """Stop: a pool not yet drained (e.g. never iterated) loses its workers at once."""
        self._results.close()
        if self._pool is not None and not self._drained:
            self._kill()

    def request_stop(self) -> int:
        """Stop after the cells in flight (safe to call from a signal handler: it only reads and
        sets a flag); returns how many cells are in flight."""
        self.stop_requested = True
        if self._pool is None:
            return int(self._computing)
        return sum(n for future, n in self._sizes.items() if future.running())

    def _serial(self, cells: Sequence[Cell], settings: ModelSettings) -> Iterator[CellResult]:
        for cell in cells:
            if self.stop_requested:
                return
            self._computing = True
            result = compute_cell(cell, settings)
            self._computing = False
            yield result

    def _parallel(self) -> Iterator[CellResult]:
        assert self._pool is not None
        pending = set(self._sizes)
        cancelled = False
        try:
            while pending:
                done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                for future in done:
                    if not future.cancelled():
                        yield from future.result()
                if self.stop_requested and not cancelled:
                    cancelled = True
                    for future in pending:
                        future.cancel()
        except BaseException:  # a second Ctrl-C, or the consumer stopped: end the workers now
            self._kill()
            raise
        self._pool.shutdown(wait=True)
        self._drained = True

    def _kill(self) -> None:
        """SIGKILL the workers and drop the pool without waiting (the store is written only by
        this process, record by record, so it stays consistent)."""
        if self._pool is None:
            return
        self._drained = True
        for process in list((getattr(self._pool, "_processes", None) or {}).values()):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                process.kill()
        self._pool.shutdown(wait=False, cancel_futures=True)


def compute_cells(cells: Sequence[Cell], settings: ModelSettings) -> list[CellResult]:
    """:func:`~lipflow.sweep.cells.compute_cell` for several cells, in order (one pool task)."""
    return [compute_cell(cell, settings) for cell in cells]


def compute_all(spec: SweepSpec, *, workers: int | None = None) -> list[CellResult]:
    """Every cell of ``spec`` without a store, in grid order (for in-memory use, e.g. Figure 1)."""
    order = {cell: index for index, cell in enumerate(spec.cells)}
    results = list(iter_local(spec.cells, model_settings(spec), _check_workers(workers)))
    return sorted(results, key=lambda result: order[result.cell])


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    *,
    workers: int | None = None,
    progress: bool = True,
    engine: Callable[[Sequence[Cell], ModelSettings], Iterator[CellResult]] | None = None,
) -> SweepRun:
    """Compute the cells of ``spec`` missing from the store at ``out`` and store each as it finishes.

    Args:
        spec: a validated spec (:func:`lipflow.sweep.load_spec`).
        out: the sweep folder; re-running the same spec there skips finished cells.
        workers: local processes (default: every core this process may use).
        progress: show a tqdm bar (cells done / total, rate, ETA) on stderr.
        engine: ``engine(cells, settings)`` yielding results in any order instead of the local
            pool, e.g. ``lambda c, s: lipflow.sweep.distributed.iter_dask(client, c, s)``.
    """
    count = _check_workers(workers)
    store = ResultStore.create_or_open(out, spec)
    current = tuple(versions()[name] for name in VERSION_COLUMNS)
    stored = store.stored_versions(spec) - {current}
    if stored:
        raise LipflowError(
            f"{store.root} holds cells computed with other package versions "
            f"({', '.join(VERSION_COLUMNS)} = {sorted(stored)[0]}) than these ({current}); results would not "
            "be bit-identical, so start the sweep in a new --out folder"
        )
    with store.appender(spec) as log:
        if log.taken_over is not None:
            warnings.warn(f"{store.root}: took over the lock of {log.taken_over.describe()}, which is no longer "
                          "running", RuntimeWarning, stacklevel=2)
        finished = store.finished(spec)
        todo = [cell for cell in spec.cells if cell.key not in finished]
        settings = model_settings(spec)
        results = iter_local(todo, settings, count) if engine is None else engine(todo, settings)
        stop = StopRequest(results.request_stop) if isinstance(results, LocalRun) else contextlib.nullcontext()
        bar = None
        stored = 0
        try:
            with stop:
                if progress:
                    from tqdm import tqdm

                    bar = tqdm(total=len(spec.cells), initial=len(spec.cells) - len(todo), unit="cell",
                               desc=spec.name, file=sys.stderr, dynamic_ncols=True)
                for result in results:
                    log.write(result)
                    stored += 1
                    if bar is not None:
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            close = getattr(results, "close", None)
            if close is not None:
                close()
    if isinstance(results, LocalRun) and results.stop_requested:
        raise SweepInterrupted(store, len(spec.cells), len(spec.cells) - len(todo) + stored)
    store.consolidate(spec)
    return SweepRun(store, len(spec.cells), len(spec.cells) - len(todo), len(todo))


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by Ctrl-C after storing the cells that were in flight."""

    def __init__(self, store: ResultStore, total: int, stored: int) -> None:
        super().__init__(f"{stored} of {total} cells are stored")
        self.store, self.total, self.stored = store, total, stored
