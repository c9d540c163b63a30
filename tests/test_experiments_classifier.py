"""The classifier experiment (Table 2 at small scale): tiny end-to-end runs, the INN classifier's
loss, accuracy and the memory-saving gradient probe."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.special import log_softmax

from lipflow.cli.main import main
from lipflow.experiments.classifier import REGULARISERS, ClassifierConfig, train_and_measure
from lipflow.experiments.inn_classifier import (
    accuracy,
    build_classifier,
    cross_entropy,
    gradient_probe,
    one_hot,
)
from lipflow.precision import precision

pytest.importorskip("sklearn", reason="needs the experiments extra: pip install 'lipflow[experiments]'")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "classifier.py"
TINY = ["--depth", "2", "--hidden", "8", "--steps", "4", "--batch", "16", "--probe-every", "2",
        "--spectrum-points", "5"]
TINY_CONFIG = ClassifierConfig(depth=2, hidden=(8,), steps=4, batch=16, probe_every=2, probe_size=16,
                               spectrum_points=5)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as stream:
        return list(csv.DictReader(stream))


def test_quick_is_a_smoke_size_and_excludes_full(tmp_path, capsys):
    from lipflow.experiments.classifier import DEFAULT, QUICK

    assert QUICK.steps < DEFAULT.steps
    assert main(["reproduce", "classifier", "--quick", "--out", str(tmp_path), "--no-progress",
                 "--architectures", "additive", "--regularisers", "none"]) == 0
    assert [r["regulariser"] for r in _rows(tmp_path / "classifier.csv")] == ["none"]
    assert main(["reproduce", "classifier", "--quick", "--full", "--no-progress"]) == 2
    assert "--quick" in capsys.readouterr().err


def test_reproduce_writes_tables_and_figure(tmp_path, capsys):
    out = tmp_path / "clf"
    assert main(["reproduce", "classifier", "--out", str(out), "--no-progress", *TINY]) == 0
    for name in ("classifier.csv", "classifier_angles.csv", "classifier.png"):
        assert (out / name).stat().st_size > 0, name
    rows = _rows(out / "classifier.csv")
    assert [(r["architecture"], r["regulariser"]) for r in rows] == [
        (a, g) for a in ("additive", "affine") for g in REGULARISERS]
    for row in rows:
        assert 0 <= float(row["test_acc"]) <= 1
        assert 0 <= int(row["recon_n_inf"]) <= 449  # every test digit is counted, finite or not
        assert int(row["spectrum_points"]) == 5
    angles = _rows(out / "classifier_angles.csv")
    assert sorted({int(r["step"]) for r in angles}) == [0, 2, 4]  # every k steps and at the end
    assert len(angles) == 3 * len(rows)
    assert "wrote" in capsys.readouterr().out


def test_example_script_runs(tmp_path):
    spec = importlib.util.spec_from_file_location("example_classifier", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__doc__ and len(module.__doc__.strip().splitlines()) == 1
    assert module.main(["--out", str(tmp_path), "--no-progress", *TINY, "--architectures", "additive",
                        "--regularisers", "none"]) == 0
    assert len(_rows(tmp_path / "classifier.csv")) == 1


def test_runs_are_deterministic_given_the_seed():
    from lipflow.experiments.data import load_digits

    data = load_digits(seed=0)
    first, probes_first = train_and_measure("affine", "fd", data, TINY_CONFIG, seed=3, progress=False)
    second, probes_second = train_and_measure("affine", "fd", data, TINY_CONFIG, seed=3, progress=False)
    first.pop("train_seconds"), second.pop("train_seconds")
    assert first == second
    assert probes_first == probes_second


@pytest.mark.parametrize("bad", [["--lr", "-1"], ["--head-dims", "65"], ["--nf-coeff", "nan"]])
def test_bad_arguments_are_clean_errors(bad, tmp_path):
    assert main(["reproduce", "classifier", "--out", str(tmp_path), "--no-progress", *TINY, *bad]) == 2


def test_cross_entropy_matches_scipy_in_float64():
    model = build_classifier("affine", 8, 2, (8,), head_dims=6)
    params = model.init(0)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((32, 8))
    labels = rng.integers(0, 10, 32)
    ctx = precision("float64")
    value = float(cross_entropy(model, params["head"], z, one_hot(labels), ctx))
    logits = z[:, :6] @ params["head"]["weights"] + params["head"]["bias"]
    expected = -np.mean(log_softmax(logits, axis=1)[np.arange(32), labels])
    # each log-probability is a dot of length 6, a shift, and a log-sum-exp of 10 terms:
    # gamma_20 relative to the magnitudes involved covers both evaluations' rounding
    scale = np.max(np.abs(logits)) + np.log(10) + abs(expected)
    assert abs(value - expected) <= 2 * ctx.gamma(20) * scale


def test_accuracy_counts_nonfinite_logits_as_wrong():
    model = build_classifier("additive", 8, 1, (4,), head_dims=8)
    params = model.init(0)
    x = np.random.default_rng(1).standard_normal((10, 8))
    labels = np.argmax(model.logits(params["head"], model.flow.forward(params["flow"], x), precision("float64")),
                       axis=1)
    assert accuracy(model, params, x, labels, "float64") == 1.0
    x[:3, 0] = np.inf
    assert accuracy(model, params, x, labels, "float64") == pytest.approx(0.7)


def test_gradient_probe_agrees_on_a_stable_additive_classifier():
    model = build_classifier("additive", 8, 3, (8,), head_dims=8)
    rng = np.random.default_rng(2)
    x = rng.uniform(-0.5, 0.5, (16, 8))
    record = gradient_probe(model, x, one_hot(rng.integers(0, 10, 16)), "float64")(0, model.init(0))
    u = precision("float64").unit_roundoff
    # additive blocks invert to O(u) per block; the angle is then O(L u) relative: sqrt(u) is
    # eight digits of room (as in tests/test_train_memory_saving.py)
    assert math.radians(record["angle_deg"]) <= 2 * math.sqrt(u)
    assert record["recompute_error"] <= 1e3 * 6 * u


def test_gradient_probe_detects_a_collapsed_affine_classifier():
    """Scales sigmoid(-30 + 2) ~ 7e-13 erase x2 in float32, so the recomputed inputs and the
    memory-saving gradient are wrong (or not finite)."""
    model = build_classifier("affine", 8, 4, (8,), head_dims=8)
    params = model.init(0)
    for block_params in params["flow"]:
        if "s" in block_params:
            block_params["s"]["biases"][-1] = block_params["s"]["biases"][-1] - 30.0
    rng = np.random.default_rng(3)
    x = rng.uniform(-0.5, 0.5, (16, 8))
    record = gradient_probe(model, x, one_hot(rng.integers(0, 10, 16)), "float32")(0, params)
    assert not record["recompute_error"] < 1e-2  # NaN or large: the inputs were not recovered
    assert math.isnan(record["angle_deg"]) or record["angle_deg"] > 1.0

