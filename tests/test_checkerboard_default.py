"""The checkerboard's default run: backend choice, parallel models, and what they must not change."""

from __future__ import annotations

import sys

import numpy as onp
import pytest

from lipflow.experiments import checkerboard as cb
from lipflow.experiments.backend import NumpyBackend, TorchBackend, get_backend, torch_installed
from lipflow.experiments.checkerboard import CheckerboardConfig, fallback_note, run_checkerboard

HINT = "needs the torch extra: pip install 'lipflow[torch]'"
TINY = CheckerboardConfig(depth=2, hidden=(8,), steps=4, batch=32, grid_step=1.0, n_samples=50)


def test_defaults_are_the_study_size_that_shows_the_effect():
    """The defaults are the scale study's smallest size at which the affine flow explodes
    outside the data box in every seed (docs/experiments/checkerboard.md)."""
    config = CheckerboardConfig()
    assert (config.depth, config.hidden, config.steps, config.batch, config.lr) == (100, (64, 64), 1000, 256, 5e-4)
    assert config.models == cb.MODELS


def test_auto_backend_is_torch_when_installed_else_numpy(monkeypatch):
    expected = TorchBackend if torch_installed() else NumpyBackend
    assert isinstance(get_backend("auto"), expected)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    assert not torch_installed()
    assert isinstance(get_backend("auto"), NumpyBackend)


def test_fallback_note_only_when_auto_fell_back_at_a_large_size():
    numpy, large = NumpyBackend(), CheckerboardConfig()
    assert "pip install 'lipflow[torch]'" in fallback_note("auto", numpy, large)
    assert fallback_note("numpy", numpy, large) is None  # asked for numpy: nothing to tell
    assert fallback_note("auto", numpy, cb.QUICK) is None  # smoke size: seconds either way
    assert fallback_note("auto", TorchBackend(), large) is None


def test_parallel_models_give_the_same_results_as_one_process():
    """Each model's run depends on its name and the seed only: two worker processes give the
    same rows (bar the timing column), error grids and samples, bit for bit."""
    serial = run_checkerboard(TINY, seed=3, progress=False, backend=NumpyBackend(), jobs=1)
    parallel = run_checkerboard(TINY, seed=3, progress=False, backend=NumpyBackend(), jobs=2)
    for a, b in zip(serial["rows"], parallel["rows"], strict=True):
        a, b = dict(a), dict(b)
        a.pop("train_seconds"), b.pop("train_seconds")
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == b[key] or (onp.isnan(a[key]) and onp.isnan(b[key])), key
    for name in TINY.models:
        onp.testing.assert_array_equal(serial["grids"][name], parallel["grids"][name])
        onp.testing.assert_array_equal(serial["samples"][name], parallel["samples"][name])


def test_small_runs_use_one_process():
    assert cb.default_jobs(cb.QUICK) == 1
    assert cb.default_jobs(CheckerboardConfig()) >= 1


def test_bad_jobs_is_a_named_error():
    with pytest.raises(cb.LipflowError, match="jobs must be a positive"):
        run_checkerboard(TINY, progress=False, jobs=0)


def test_torch_residual_forward_and_logdet_equals_the_separate_calls():
    """The fused pass normalises the weights once but must compute the same values as
    forward() and logdet() called apart (the same operations in the same order)."""
    torch = pytest.importorskip("torch", reason=HINT)
    from lipflow.interop.torch import to_torch

    flow = cb.build_model("residual", CheckerboardConfig(depth=3, hidden=(16, 16)))
    module = to_torch(flow, flow.init(0), dtype=torch.float32)
    x = torch.as_tensor(onp.random.default_rng(0).standard_normal((64, 2)), dtype=torch.float32)
    for block in module.blocks:
        y, logdet = block.forward_and_logdet(x)
        assert torch.equal(y, block(x))
        assert torch.equal(logdet, block.logdet(x))
