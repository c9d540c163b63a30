"""Training an experiment's models in parallel worker processes.

An experiment whose models train independently (each run a function of the model's name and
the seed only) hands :func:`run_models` one picklable task, ``task(name) -> result``, and gets
the same results as a loop over the names, in less wall time on a multi-core machine. The
workers:

* start by ``spawn`` (no fork of a process that may hold torch's or BLAS's threads);
* train with one BLAS / torch thread each, so parallel models do not oversubscribe the cores;
* ignore Ctrl-C and die with their parent (like a sweep's workers,
  :mod:`lipflow.sweep.workers`): killing the parent alone, or pressing Ctrl-C, stops them at
  once, and the parent writes no result.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from typing import Any

from lipflow.errors import LipflowError

__all__ = ["default_jobs", "run_models"]


def default_jobs(models: Sequence[str], small: bool) -> int:
    """One process per model, at most one per available core; one for a ``small`` run (of
    seconds: a worker's start-up would cost more than it saves)."""
    from lipflow.sweep.runner import default_workers  # the cores this process may use

    return 1 if small else max(1, min(len(models), default_workers()))


def _worker_setup(threads: int, parent: int) -> None:
    from lipflow.sweep.workers import die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it stops the workers)
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # read by torch at import
        os.environ[variable] = str(threads)
    die_with_parent(parent)


def _stop_workers(pool: Any) -> None:
    """Terminate ``pool``'s worker processes and wait for the pool to wind down, with Ctrl-C
    ignored meanwhile (a second Ctrl-C would otherwise break the clean-up); the previous
    handler is restored afterwards."""
    import threading

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
    try:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)


def run_models(task: Callable[[str], Any], models: Sequence[str], jobs: int = 1, *, first: Sequence[str] = (),
               progress: bool = True, description: str = "models") -> dict[str, Any]:
    """``{name: task(name)}`` for every model, in ``jobs`` worker processes when ``jobs > 1``
    (the names in ``first``, the slowest, start first). ``task`` must be picklable (a
    module-level function, or a ``functools.partial`` of one) when ``jobs > 1``."""
    if not isinstance(jobs, int) or jobs < 1:
        raise LipflowError(f"jobs must be a positive number of processes, got {jobs!r}")
    jobs = min(jobs, len(models))
    if jobs <= 1:
        return {name: task(name) for name in models}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    order = sorted(models, key=lambda name: name not in first)
    context = multiprocessing.get_context("spawn")
    outcomes: dict[str, Any] = {}
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_setup, initargs=(1, os.getpid()))
    try:
        futures = {pool.submit(task, name): name for name in order}
        bar = tqdm(as_completed(futures), total=len(futures), desc=f"{description}: {len(order)} models in {jobs} "
                   "processes", disable=not progress, leave=False)
        for future in bar:
            outcomes[futures[future]] = future.result()
            bar.set_postfix(done=futures[future])
    except BaseException:  # Ctrl-C or a failed model: stop the other workers now, not after their model
        _stop_workers(pool)
        raise
    pool.shutdown()
    return {name: outcomes[name] for name in models}
