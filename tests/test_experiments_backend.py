"""The experiment backends: one definition, numpy or torch training, the same outputs."""

from __future__ import annotations

import csv
import importlib.util
import sys

import numpy as onp
import pytest

from lipflow.cli.main import main
from lipflow.errors import LipflowError
from lipflow.experiments.backend import BackendUnavailableError, NumpyBackend, get_backend
from lipflow.experiments.checkerboard import CheckerboardConfig, run_checkerboard

HINT = "needs the torch extra: pip install 'lipflow[torch]'"
TINY = CheckerboardConfig(depth=2, hidden=(8,), steps=5, batch=32, grid_step=1.0, models=("affine", "modified"))
TINY_ARGS = ["--depth", "2", "--hidden", "8", "--steps", "3", "--batch", "32", "--grid-step", "1.0",
             "--models", "affine"]


def test_unknown_backend_and_numpy_on_cuda_are_named_errors():
    with pytest.raises(LipflowError, match="unknown backend"):
        get_backend("jax")
    with pytest.raises(LipflowError, match="CPU only"):
        get_backend("numpy", "cuda")
    assert isinstance(get_backend(), NumpyBackend)


def test_torch_missing_is_a_named_error_with_the_install_hint(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(BackendUnavailableError, match=r"pip install 'lipflow\[torch\]'"):
        get_backend("torch")
    status = main(["reproduce", "checkerboard", "--backend", "torch", "--out", str(tmp_path), "--no-progress",
                   *TINY_ARGS])
    assert status == 2
    assert "lipflow[torch]" in capsys.readouterr().err


def test_torch_and_numpy_training_agree():
    """Same data, init, loss and Adam: after a few float64 steps the params agree to rounding
    amplified by the steps (Adam's update is O(lr) per step; allow 1e-9 relative)."""
    pytest.importorskip("torch", reason=HINT)
    config = CheckerboardConfig(**{**TINY.__dict__, "train_precision": "float64"})
    numpy_run = run_checkerboard(config, progress=False, backend=get_backend("numpy"))
    torch_run = run_checkerboard(config, progress=False, backend=get_backend("torch"))
    for a, b in zip(numpy_run["rows"], torch_run["rows"], strict=True):
        assert list(a) == list(b)
        assert a["model"] == b["model"] and a["n"] == b["n"]
        assert a["test_nll"] == pytest.approx(b["test_nll"], rel=1e-9)
    for name in numpy_run["grids"]:
        assert onp.all(onp.isfinite(torch_run["grids"][name]))


def test_reproduce_with_torch_writes_the_same_columns(tmp_path):
    pytest.importorskip("torch", reason=HINT)
    columns = {}
    for backend in ("numpy", "torch"):
        out = tmp_path / backend
        assert main(["reproduce", "checkerboard", "--backend", backend, "--out", str(out), "--no-progress",
                     *TINY_ARGS]) == 0
        with open(out / "checkerboard.csv") as stream:
            columns[backend] = csv.DictReader(stream).fieldnames
        assert (out / "checkerboard.png").stat().st_size > 0
    assert list(columns["numpy"]) == list(columns["torch"])


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason=HINT)
def test_cuda_request_without_gpu_is_a_named_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        get_backend("torch", "cuda")
