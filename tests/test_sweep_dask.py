"""The Dask path: a LocalCluster on loopback stores the same rows as the local pool."""

from __future__ import annotations

import pytest

from lipflow.sweep import run_sweep, spec_from_mapping

pytest.importorskip("distributed", reason="Dask distributed is not installed (pip install 'lipflow[dask]')")

from lipflow.sweep.distributed import dask_client, iter_dask

SPEC = {
    "name": "dask",
    "metrics": ["recon_error", "nonfinite", "forward_error", "sigma_max", "cond"],
    "samples": 3,
    "axes": {"block": ["additive", "affine"], "precision": ["float16", "float64"], "depth": "1:5", "seed": [0, 1]},
}


@pytest.mark.slow
def test_local_cluster_gives_the_rows_of_the_local_pool(tmp_path):
    spec = spec_from_mapping(SPEC)
    local = run_sweep(spec, tmp_path / "local", workers=2, progress=False)
    with dask_client("local", workers=2) as client:
        addresses = list(client.scheduler_info()["workers"])
        assert len(addresses) == 2 and all(a.startswith("tcp://127.0.0.1:") for a in addresses)
        distributed = run_sweep(spec, tmp_path / "dask", progress=False,
                                engine=lambda cells, settings: iter_dask(client, cells, settings))
    assert distributed.computed == len(spec.cells)
    assert distributed.store.results_path.read_bytes() == local.store.results_path.read_bytes()
