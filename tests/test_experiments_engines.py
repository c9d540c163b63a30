"""Classifier and regression2d on both backends: one loss definition, the same outputs, and
the two engines agree on the loss and gradient of identical params to float32 rounding."""

from __future__ import annotations

import csv
import importlib.util
import math
import sys

import numpy as onp
import pytest

from lipflow.cli.main import main
from lipflow.experiments import classifier, regression2d
from lipflow.experiments.data import load_digits, regression_pairs
from lipflow.experiments.engines import Model, loss_and_gradient
from lipflow.experiments.inn_classifier import build_classifier
from lipflow.precision import precision
from lipflow.train import FDRegulariser
from lipflow.train.tree import flatten_to_vector, tree_leaves

HINT = "needs the torch extra: pip install 'lipflow[torch]'"
HAS_TORCH = importlib.util.find_spec("torch") is not None
CSVS = {"classifier": ("classifier.csv", "classifier_angles.csv"),
        "regression2d": ("regression2d.csv", "regression2d_history.csv")}


def _columns(path):
    with open(path) as stream:
        return csv.DictReader(stream).fieldnames


@pytest.mark.parametrize("experiment", sorted(CSVS))
def test_quick_run_on_both_backends_writes_the_same_files_and_columns(experiment, tmp_path):
    if not HAS_TORCH:
        pytest.skip(HINT)
    columns = {}
    for backend in ("numpy", "torch"):
        out = tmp_path / backend
        argv = ["reproduce", experiment, "--quick", "--backend", backend, "--out", str(out), "--no-progress"]
        argv += ["--architectures", "affine", "--regularisers", "fd"] if experiment == "classifier" else [
            "--models", "nf"]
        assert main(argv) == 0
        columns[backend] = [_columns(out / name) for name in CSVS[experiment]]
        assert (out / f"{experiment}.png").stat().st_size > 0
    assert columns["numpy"] == columns["torch"]


@pytest.mark.parametrize("experiment", sorted(CSVS))
def test_backend_errors_are_one_line_and_exit_2(experiment, tmp_path, capsys, monkeypatch):
    argv = ["reproduce", experiment, "--quick", "--out", str(tmp_path), "--no-progress"]
    assert main([*argv, "--backend", "numpy", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert "CPU only" in err and "Traceback" not in err and len(err.splitlines()) == 1
    if HAS_TORCH:
        import torch

        if not torch.cuda.is_available():
            assert main([*argv, "--backend", "torch", "--device", "cuda"]) == 2
            err = capsys.readouterr().err.strip()
            assert "CUDA" in err and "Traceback" not in err and len(err.splitlines()) == 1
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    assert main([*argv, "--backend", "torch"]) == 2
    err = capsys.readouterr().err.strip()
    assert "lipflow[torch]" in err and len(err.splitlines()) == 1
    assert not (tmp_path / f"{experiment}.csv").exists()


@pytest.mark.parametrize("experiment", sorted(CSVS))
def test_help_names_the_backend_flags(experiment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", experiment, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--backend {numpy,torch,auto}" in text and "--device" in text and "--quick" in text


# ---- the two engines agree on identical params ----------------------------------------------------
def _chain_length(params, dim: int, batch: int) -> int:
    """Roundings on the longest dependency path of a loss evaluation, counted generously: every
    weight matrix of fan-in k adds k (a dot product) + 1 (bias) + 4 (activation), every block 8
    (scale, log, couple), and the batch reductions dim + batch + 16 (losses, log-sum-exp)."""
    count = dim + batch + 16
    for block in params:
        count += 8 + sum(onp.shape(w)[0] + 5 for w in tree_leaves(block) if onp.ndim(w) == 2)
    return count


def _assert_agree(case, batch, magnitude, n_ops):
    """|L_numpy - L_torch| <= 2 gamma_N S and ||g_numpy - g_torch|| <= 2 gamma_2N ||g||_1-ish
    scale: the first-order rounding model (each engine within gamma_N of the exact value, relative
    to the magnitude S of the terms it sums), at float32 and at float64. Fails on any term
    computed differently by the two engines (all coefficients are 1, so every term counts)."""
    loss, model, params = case
    for name in ("float32", "float64"):
        gamma_loss, gamma_grad = precision(name).gamma(n_ops), precision(name).gamma(2 * n_ops)
        value_np, grad_np = loss_and_gradient("numpy", loss, model, params, batch, train_precision=name)
        value_t, grad_t = loss_and_gradient("torch", loss, model, params, batch, train_precision=name)
        assert math.isfinite(value_np) and math.isfinite(value_t)
        assert abs(value_np - value_t) <= 2 * gamma_loss * magnitude, (name, value_np, value_t, magnitude)
        g_np, g_t = flatten_to_vector(grad_np), flatten_to_vector(grad_t)
        g_64 = flatten_to_vector(loss_and_gradient("numpy", loss, model, params, batch,
                                                   train_precision="float64")[1])
        assert g_np.shape == g_t.shape and onp.linalg.norm(g_64) > 0
        assert onp.linalg.norm(g_np - g_t) <= 2 * gamma_grad * magnitude_grad(g_64, magnitude, value_np), name


def magnitude_grad(g_64, magnitude, value):
    """Gradient scale: ||g|| times the loss's term magnitude over its value (>= 1: cancellation
    among the loss's terms cancels in the gradient too)."""
    return float(onp.linalg.norm(g_64)) * max(1.0, magnitude / max(abs(value), 1e-300))


@pytest.mark.skipif(not HAS_TORCH, reason=HINT)
@pytest.mark.parametrize("name", ["nf", "fd"])
def test_engines_agree_on_the_regression_loss(name):
    config = regression2d.RegressionConfig(flow_steps=3, nf_coeff=1.0, fd_coeff=1.0, fd_every=1)
    flow = regression2d.build_flow(config)
    params = flow.init(4)
    rng = onp.random.default_rng(5)
    x, y = regression_pairs(32, rng)
    fd = FDRegulariser(1.0, 1.0, config.fd_eps)
    noise = fd.directions(rng, x.shape)
    loss = regression2d.regression_loss(flow, name, config)
    magnitude = _magnitude(flow, params, x, y, name, noise, fd)
    _assert_agree((loss, Model(flow), params), (x, y, noise), magnitude, _chain_length(params, 2, 32))


@pytest.mark.skipif(not HAS_TORCH, reason=HINT)
@pytest.mark.parametrize("regulariser", ["nf", "fd"])
def test_engines_agree_on_the_classifier_loss(regulariser):
    config = classifier.ClassifierConfig(depth=2, hidden=(8,), batch=16, fd_coeff=1.0, nf_coeff=1.0)
    data = load_digits(seed=0)
    model = build_classifier("affine", 64, config.depth, config.hidden, config.head_dims, seed=1)
    params = model.init(1)
    batch = classifier._sampler(data, config)(0, onp.random.default_rng(2))
    loss = classifier.classifier_loss(model, regulariser, config)
    fd = FDRegulariser(1.0, 1.0, config.fd_eps)
    x = batch[0]
    z = model.flow.forward(params["flow"], x, ctx="float64")
    logits = z[:, : model.head_dims] @ params["head"]["weights"] + params["head"]["bias"]
    # cross-entropy terms: |logits| and the log-sum-exp, per sample
    magnitude = float(onp.mean(onp.sum(onp.abs(logits), axis=1) + onp.log(onp.sum(onp.exp(logits), axis=1))))
    magnitude += _magnitude(model.flow, params["flow"], x, None, regulariser, batch[2], fd)
    n_ops = _chain_length(params["flow"], 64, 16) + model.head_dims
    _assert_agree((loss, Model(parts={"flow": model.flow}), params), batch, magnitude, n_ops)


def _magnitude(flow, params, x, y, name, noise, fd):
    """S: the sum of the absolute sizes of the loss's terms in float64 (per-sample means), with
    the FD differences' cancellation made explicit (an error of gamma (|z| + |z'|) in z - z'
    enters ||z - z'||^2 / eps as 2 ||z - z'|| (|z| + |z'|) / eps)."""
    z, logdet = flow.forward_and_logdet(params, x, ctx="float64")
    norm = onp.linalg.norm
    total = 0.0
    if y is not None:
        total += float(onp.mean(onp.sum((z - y) ** 2 + 2 * onp.abs(z - y) * onp.abs(z), axis=1)))
    if name == "nf":
        total += float(onp.mean(onp.sum(z * z, axis=1) + x.shape[1] * math.log(2 * math.pi) / 2 + onp.abs(logdet)))
    if name == "fd":
        moved = flow.forward(params, x + fd.eps * noise[0], ctx="float64")
        back = flow.inverse(params, z + fd.eps * noise[1], ctx="float64")
        for a, b in ((z, moved), (x, back)):
            gap = norm(a - b, axis=1)
            total += float(onp.mean(gap * (2 * (norm(a, axis=1) + norm(b, axis=1)) + gap) / fd.eps))
    return total
