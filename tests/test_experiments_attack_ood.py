"""The ``attack`` and ``ood`` experiments and their digit flows, at tiny sizes."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import numpy as onp
import pytest

from lipflow.cli.main import main
from lipflow.experiments.digit_flows import (
    DigitFlowConfig,
    build_digit_flow,
    data_init_actnorms,
    estimated_nf_loss,
)
from lipflow.train import nf_loss

pytest.importorskip("sklearn", reason="needs the experiments extra: pip install 'lipflow[experiments]'")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY_FLOW = ["--depth", "1", "--hidden", "4", "--steps", "2", "--batch", "16"]
TINY = {
    "ood": [*TINY_FLOW, "--noise", "5"],
    "attack": [*TINY_FLOW, "--images", "3", "--attack-steps", "2"],
}
FILES = {
    "ood": ["ood.csv", "ood.png"],
    "attack": ["attack.csv", "attack_history.csv", "attack.png"],
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_reproduce_writes_tables_and_figure(name, tmp_path, capsys):
    out = tmp_path / name
    assert main(["reproduce", name, "--out", str(out), "--no-progress", *TINY[name]]) == 0
    for file in FILES[name]:
        assert (out / file).stat().st_size > 0, file
    assert "wrote" in capsys.readouterr().out


def test_ood_counts_every_input(tmp_path):
    out = tmp_path / "ood"
    assert main(["reproduce", "ood", "--out", str(out), "--no-progress", "--float64", "--models", "affine",
                 *TINY["ood"]]) == 0
    with open(out / "ood.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert {(r["input"], r["precision"]) for r in rows} == {
        (i, p) for i in ("digits (test)", "uniform", "gaussian", "rademacher") for p in ("float32", "float64")}
    for row in rows:
        assert int(row["n"]) == (449 if row["input"] == "digits (test)" else 5)
        assert 0 <= int(row["n_inf"]) <= int(row["n"])


def test_ood_quick_is_the_smoke_size_and_excludes_full(tmp_path, capsys):
    from lipflow.experiments.ood import DEFAULT, QUICK

    assert QUICK.steps < DEFAULT.steps and QUICK.depth <= DEFAULT.depth
    out = tmp_path / "ood"
    assert main(["reproduce", "ood", "--quick", "--out", str(out), "--no-progress", "--models", "affine"]) == 0
    with open(out / "ood.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert {int(r["n"]) for r in rows if r["input"] != "digits (test)"} == {20}
    assert main(["reproduce", "ood", "--quick", "--full", "--no-progress"]) == 2
    assert "--quick" in capsys.readouterr().err


def test_attack_stays_in_the_box_and_never_lowers_the_worst_error(tmp_path):
    from lipflow.experiments.attack import run_attack

    config = DigitFlowConfig(depth=1, hidden=(4,), steps=2, batch=16)
    results = run_attack(config, ("affine",), 3, 4, 0.5, 1e-3, progress=False)
    attacked = results["attacks"]["affine"]
    assert onp.max(onp.abs(attacked["worst_x"] - results["x"])) <= results["radius"]
    # the worst error is the max over the random start and every measured iterate
    assert onp.all(~(attacked["worst"] < attacked["start"]))


def test_estimated_loss_matches_exact_loss_without_residual_blocks():
    # the estimate only replaces residual log-dets: for a coupling flow it is the exact loss
    flow = build_digit_flow("affine", DigitFlowConfig(depth=2, hidden=(8,)))
    x = onp.random.default_rng(0).uniform(size=(5, 64))
    params = data_init_actnorms(flow, flow.init(0), x)
    probes = onp.ones((len(flow.blocks), 5, 64))
    exact = nf_loss(flow, params, x, ctx="float64")
    estimate = estimated_nf_loss(flow, params, x, probes, 3, "float64")
    assert estimate == exact  # same operations in the same order


def test_residual_logdet_estimate_is_unbiased_up_to_truncation():
    # the mean over Rademacher probes is the truncated series of the exact traces, whose gap to
    # the exact log-det is at most series_truncation_bound; 5 standard errors cover the sampling
    from lipflow.blocks.residual import series_truncation_bound

    config = DigitFlowConfig(depth=1, hidden=(8,), residual_coeff=0.5)
    flow = build_digit_flow("residual", config)
    x = onp.random.default_rng(1).uniform(size=(1, 64))
    params = data_init_actnorms(flow, flow.init(0), onp.random.default_rng(2).uniform(size=(32, 64)))
    exact = float(nf_loss(flow, params, x, ctx="float64"))
    rng = onp.random.default_rng(3)
    terms = 6
    probes = rng.choice([-1.0, 1.0], size=(200, len(flow.blocks), 1, 64))
    per_probe = [float(estimated_nf_loss(flow, params, x, probe, terms, "float64")) for probe in probes]
    mean = float(onp.mean(per_probe))
    spread = float(onp.std(per_probe)) / math.sqrt(len(per_probe))
    assert abs(mean - exact) <= series_truncation_bound(0.5, 64, terms) + 5 * spread


def test_bad_arguments_are_clean_errors(capsys):
    assert main(["reproduce", "ood", "--noise-width", "-1", "--steps", "1", "--no-progress"]) == 2
    assert main(["reproduce", "attack", "--images", "100000", "--steps", "1", "--no-progress", *TINY_FLOW[:4]]) == 2
    with pytest.raises(SystemExit):
        main(["reproduce", "attack", "--attack-steps", "0"])
    assert "positive integer" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(TINY))
def test_example_script_runs(name, tmp_path):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__doc__ and len(module.__doc__.strip().splitlines()) == 1
    assert module.main(["--out", str(tmp_path), "--no-progress", *TINY[name]]) == 0


@pytest.mark.parametrize("name", sorted(TINY))
def test_help_renders(name, capsys):
    # argparse %-formats help text: a stray "%" in a description would crash --help
    for argv in (["reproduce", "--help"], ["reproduce", name, "--help"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 0
    assert "--threshold" in capsys.readouterr().out or name == "ood"
