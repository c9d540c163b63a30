"""The sweep runner and store: determinism, resume, torn files, what cells measure."""

from __future__ import annotations

import math

import pytest

from lipflow.errors import LipflowError
from lipflow.experiments.fig1 import run_fig1
from lipflow.precision import precision
from lipflow.sweep import cells as cell_module
from lipflow.sweep import compute_all, run_sweep, spec_from_mapping
from lipflow.sweep.runner import model_settings
from lipflow.sweep.store import ResultStore

SMALL = {
    "name": "small",
    "metrics": ["recon_error", "nonfinite", "forward_error", "inverse_error", "sigma_min", "cond"],
    "samples": 3,
    "axes": {"block": ["affine", "residual"], "precision": ["float16", "float64"], "depth": "1:3", "seed": [0, 5]},
}

TINY = {**SMALL, "axes": {"block": ["affine"], "precision": ["float16", "float64"], "depth": "1:3"}}


def _clear_caches():
    cell_module._CHAINS.clear()
    cell_module._LAYER_LISTS.clear()
    cell_module.build_layer.cache_clear()
    cell_module._prepared.cache_clear()


def test_a_cell_does_not_depend_on_what_ran_before_it():
    spec = spec_from_mapping(SMALL)
    settings = model_settings(spec)
    everything = {r.cell: r.values for r in compute_all(spec, workers=1)}
    for cell in (spec.cells[-1], spec.cells[5], spec.cells[0]):
        _clear_caches()
        alone = cell_module.compute_cell(cell, settings).values
        assert repr(alone) == repr(everything[cell])  # bit-identical, inf/NaN included


def test_two_workers_give_the_same_numbers_as_one():
    spec = spec_from_mapping(SMALL)
    serial = compute_all(spec, workers=1)
    parallel = compute_all(spec, workers=2)
    assert [r.cell for r in serial] == list(spec.cells)
    assert repr([r.values for r in serial]) == repr([r.values for r in parallel])


def test_figure1_through_the_pool_matches_the_serial_run():
    assert run_fig1(max_depth=15, workers=2) == run_fig1(max_depth=15)


def test_rerun_skips_finished_cells_and_refuses_another_spec(tmp_path):
    spec = spec_from_mapping(TINY)
    first = run_sweep(spec, tmp_path / "run", workers=1, progress=False)
    assert (first.computed, first.skipped) == (len(spec.cells), 0)
    text = first.store.results_path.read_text()
    again = run_sweep(spec, tmp_path / "run", workers=1, progress=False)
    assert (again.computed, again.skipped) == (0, len(spec.cells))
    assert again.store.results_path.read_text() == text
    other = spec_from_mapping({**TINY, "samples": 4})
    with pytest.raises(LipflowError, match=r"different sweep.*samples.*--resume"):
        run_sweep(other, tmp_path / "run", progress=False)


def test_a_torn_log_tail_is_dropped_and_recomputed(tmp_path):
    spec = spec_from_mapping(TINY)
    run = run_sweep(spec, tmp_path / "run", workers=1, progress=False)
    text = run.store.results_path.read_text()
    log = run.store.log_path
    data = log.read_bytes()
    # as if killed inside the last write: half of the last record, the last line torn (a killed run
    # has not consolidated results.csv, which would otherwise still hold that cell)
    run.store.results_path.unlink()
    log.write_bytes(data[: len(data) - len(data.splitlines(keepends=True)[-1]) - 40])
    assert len(run.store.finished(spec)) == len(spec.cells) - 1
    again = run_sweep(spec, tmp_path / "run", workers=1, progress=False)
    assert again.computed == 1
    assert again.store.results_path.read_text() == text
    assert len(log.read_bytes().splitlines()) == 1 + len(spec.cells) * len(spec.metrics)  # no torn bytes kept


def test_a_kill_while_the_spec_was_written_leaves_a_usable_folder(tmp_path):
    spec = spec_from_mapping({**TINY, "axes": {**TINY["axes"], "depth": [1]}})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".spec.toml.k3j2.tmp").write_text("name = ")  # killed before os.replace
    run = run_sweep(spec, tmp_path / "run", workers=1, progress=False)
    assert run.computed == len(spec.cells)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock", "cells.csv", "results.csv", "spec.toml"]


def test_one_folder_takes_one_writer(tmp_path):
    spec = spec_from_mapping({**TINY, "axes": {**TINY["axes"], "depth": [1]}})
    store = ResultStore.create_or_open(tmp_path / "run", spec)
    with store.appender(spec), pytest.raises(LipflowError, match="another `lipflow sweep`"):
        run_sweep(spec, tmp_path / "run", progress=False)


def test_results_from_other_package_versions_are_not_mixed(tmp_path):
    spec = spec_from_mapping({**TINY, "axes": {**TINY["axes"], "depth": [1]}})
    run = run_sweep(spec, tmp_path / "run", workers=1, progress=False)
    log = run.store.log_path
    log.write_text(log.read_text().replace(f",{cell_module.versions()['mpmath']}\n", ",0.0.1\n", 3))
    with pytest.raises(LipflowError, match="bit-identical"):
        run_sweep(spec, tmp_path / "run", progress=False)


def test_reference_cells_have_zero_reference_error_and_errors_order_by_precision():
    spec = spec_from_mapping(
        {**SMALL, "axes": {"block": ["affine"], "precision": ["float16", "float32", "float64", "mp50"],
                           "depth": [3]}, "reference": "mp50"}
    )
    values = {r.cell.precision: r.values for r in compute_all(spec)}
    assert values["mp50"]["forward_error"] == 0.0 and values["mp50"]["inverse_error"] == 0.0
    errors = [values[p]["forward_error"] for p in ("float16", "float32", "float64")]
    assert errors[0] > errors[1] > errors[2] > 0


def test_toy_affine_inverse_jacobian_is_ten_to_the_depth():
    spec = spec_from_mapping(
        {"metrics": ["sigma_min", "inverse_sigma_max", "inverse_sigma_min"], "axes": {
            "block": ["affine"], "conditioner": ["toy"], "inputs": ["ones"], "precision": ["float64"],
            "depth": [1, 7, 30]}}
    )
    ctx = precision("float64")
    for result in compute_all(spec):
        depth = result.cell.depth
        # d x2 / d y2 = 1 / fl(0.1) per layer, rounded once per layer: relative error <= gamma_{2L}
        assert math.isclose(result.values["inverse_sigma_max"], 10.0**depth, rel_tol=ctx.gamma(2 * depth))
        assert result.values["inverse_sigma_min"] == 1.0
        assert math.isclose(result.values["sigma_min"], 0.1**depth, rel_tol=1e-14)


def test_budget_metrics_when_the_budget_module_is_present():
    if not cell_module.budget_available():
        pytest.skip("lipflow.analysis.budget is not part of this tree")
    spec = spec_from_mapping(
        {"metrics": ["recon_error", "delta", "delta2", "bound", "ratio", "violations", "undecided"], "samples": 4,
         "axes": {"block": ["affine"], "precision": ["float16", "float32"], "depth": [2, 3]}}
    )
    for result in compute_all(spec):
        values = result.values
        # the proven bound holds for every decided sample (the budget decides with the
        # reference's own error as slack), and every sample is decided here
        assert values["violations"] == 0 and values["undecided"] == 0
        assert 0 < values["ratio"] < math.inf and values["delta"] > 0 and values["bound"] >= values["delta2"]
