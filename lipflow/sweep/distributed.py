"""Run sweep cells on a Dask distributed cluster (the optional extra ``lipflow[dask]``).

The calling process stays the only writer of the result store: workers compute cells and
return them; the runner stores each as it arrives, exactly as with the local pool.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from lipflow.errors import LipflowError, MissingExtraError
from lipflow.sweep.cells import CellResult, ModelSettings, compute_cell
from lipflow.sweep.spec import Cell

__all__ = ["LOCAL", "dask_client", "iter_dask"]

#: ``--dask local`` starts a cluster of worker processes on this machine (loopback only)
LOCAL = "local"


def _distributed() -> Any:
    try:
        import distributed
    except ModuleNotFoundError:
        raise MissingExtraError(
            "running on Dask needs the optional extra: pip install 'lipflow[dask]' "
            "(or pip install 'dask[distributed]')",
            name="distributed",
        ) from None
    return distributed


@contextmanager
def dask_client(address: str, *, workers: int = 2) -> Iterator[Any]:
    """A ``distributed.Client``: to the scheduler at ``address``, or, for ``"local"``, to a new
    ``LocalCluster`` of ``workers`` single-threaded processes listening on 127.0.0.1 only."""
    distributed = _distributed()
    if address == LOCAL:
        with distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None,
        ) as cluster, distributed.Client(cluster) as client:
            yield client
        return
    try:
        client = distributed.Client(address, timeout="10s")
    except OSError as error:
        raise LipflowError(f"cannot reach the Dask scheduler at {address!r}: {error}") from None
    with client:
        yield client


def iter_dask(client: Any, cells: Sequence[Cell], settings: ModelSettings) -> Iterator[CellResult]:
    """Results of ``cells`` computed on ``client``'s workers, in completion order."""
    distributed = _distributed()
    if not cells:
        return iter(())
    futures = client.map(compute_cell, list(cells), settings=settings,
                         key=[f"lipflow-cell-{cell.key}" for cell in cells], pure=False)
    return _results(distributed.as_completed(futures), futures)


def _results(completed: Any, futures: list[Any]) -> Iterator[CellResult]:
    try:
        for future in completed:
            yield future.result()
    finally:
        for future in futures:
            future.cancel()
