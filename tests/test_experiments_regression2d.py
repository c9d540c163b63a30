"""The regression2d experiment (paper Fig. 6) at tiny size: CLI, tables, figure, example script,
and the physics the experiment rests on."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as onp
import pytest

from lipflow.cli.main import main
from lipflow.errors import LipflowError
from lipflow.experiments import regression2d
from lipflow.experiments.data import regression_pairs

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = ["--flow-steps", "1", "--steps", "4", "--n-train", "16", "--monitor-every", "2"]


def test_reproduce_writes_tables_and_figure(tmp_path, capsys):
    out = tmp_path / "r2d"
    assert main(["reproduce", "regression2d", "--out", str(out), "--no-progress", *TINY]) == 0
    for file in ("regression2d.csv", "regression2d_history.csv", "regression2d.png"):
        assert (out / file).stat().st_size > 0, file
    with open(out / "regression2d.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [r["model"] for r in rows] == list(regression2d.MODELS)
    with open(out / "regression2d_history.csv") as stream:
        history = list(csv.DictReader(stream))
    # monitored at steps 0, 2 and after the last step (4), for each model
    assert [int(r["step"]) for r in history if r["model"] == "none"] == [0, 2, 4]
    assert "wrote" in capsys.readouterr().out


def test_untrained_flow_round_trips_at_rounding_level():
    """The experiment measures growth from this level: before training (worst cond ~1e2) the
    float64 round trip stays within 1000 unit roundoffs. A sanity check on the set-up, not a
    proven bound; it fails if the flow starts ill-conditioned or an inverse is wrong."""
    config = regression2d.RegressionConfig(flow_steps=2)
    flow = regression2d.build_flow(config)
    x, _ = regression_pairs(64, onp.random.default_rng(0))
    measured = regression2d._measure(flow, flow.init(0), x)
    assert measured["n_inf_f32"] == 0
    assert measured["mean_error_f64"] < 1e3 * onp.finfo(onp.float64).eps
    assert measured["worst_cond"] >= 1.0


def test_target_is_nearly_singular():
    x, y = regression_pairs(10, onp.random.default_rng(1))
    assert onp.array_equal(y[:, 0], x[:, 0])
    assert onp.array_equal(y[:, 1], x[:, 1] * 1e-12)


def test_bad_arguments_are_clean_errors(capsys):
    assert main(["reproduce", "regression2d", "--lr", "-1", "--no-progress"]) == 2
    assert "--lr" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reproduce", "regression2d", "--steps", "0"])
    assert "positive integer" in capsys.readouterr().err


def test_example_script_runs(tmp_path):
    spec = importlib.util.spec_from_file_location("example_regression2d", EXAMPLES / "regression2d.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__doc__ and len(module.__doc__.strip().splitlines()) == 1
    assert module.main(["--out", str(tmp_path), "--no-progress", *TINY]) == 0


def test_parallel_models_give_the_same_results_as_one_process():
    """Each model's run depends on its name and the seed only: two worker processes give the
    same final rows (bar the timing column), histories and test errors, bit for bit."""
    config = regression2d.QUICK
    serial = regression2d.run_regression(config, seed=2, progress=False, jobs=1)
    parallel = regression2d.run_regression(config, seed=2, progress=False, jobs=2)
    for a, b in zip(serial["rows"], parallel["rows"], strict=True):
        a, b = dict(a), dict(b)
        a.pop("train_seconds"), b.pop("train_seconds")
        assert a.keys() == b.keys()
        assert all(a[k] == b[k] or (onp.isnan(a[k]) and onp.isnan(b[k])) for k in a), (a, b)
    assert [sorted(r.items()) for r in serial["history"]] == [sorted(r.items()) for r in parallel["history"]]
    for name in config.models:
        onp.testing.assert_array_equal(serial["test_errors"][name], parallel["test_errors"][name])


def test_monitor_callback_needs_one_process():
    with pytest.raises(LipflowError, match="jobs=1"):
        regression2d.run_regression(regression2d.QUICK, progress=False, on_record=print, jobs=2)
