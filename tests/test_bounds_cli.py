"""``lipflow bounds``: the command a new user would try."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lipflow
from lipflow.blocks.serialise import save_flow
from lipflow.cli.main import main


def test_bounds_cli_affine_inverse(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bounds", "affine", "--scale", "sigmoid", "--box", "-4", "4", "--direction", "inverse",
                 "--width", "16", "--seed", "0", "--splits", "4"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Lip(F^-1) <=" in out and "lem:affine-local" in out and "LaTeX:" in out and "formula:" in out


def test_bounds_cli_estimate_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bounds", "additive", "--width", "4", "--estimate", "--samples", "16", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bound"]["kind"] == "upper" and report["estimate"]["kind"] == "lower"
    assert report["ratio_upper_over_lower"] >= 1 - 1e-12


def test_bounds_cli_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bounds", "affine"]) == 2
    assert "--box LOW HIGH" in capsys.readouterr().err
    assert main(["bounds"]) == 2
    assert "name a block family" in capsys.readouterr().err


def test_bounds_cli_saved_flow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = lipflow.Flow([lipflow.AdditiveCoupling(2, t=lipflow.MLP(hidden=(4,))), lipflow.Reverse(2),
                         lipflow.AffineCoupling(2, s=lipflow.MLP(hidden=(4,)), t=lipflow.MLP(hidden=(4,)),
                                                scale=lipflow.Bounded(0.5, 1.0))])
    save_flow(tmp_path / "flow", flow, flow.init(0))
    assert main(["bounds", "--model", str(tmp_path / "flow.json"), "--box", "-2", "2", "--direction", "both",
                 "--splits", "2"]) == 0
    out = capsys.readouterr().out
    from lipflow.precision.arb import flint_available

    if flint_available():  # flows on a box: the mean-value bound of the whole composition
        assert out.count("lem:mean-value-flow") == 2
    else:
        assert out.count("lem:composition") == 2 and "layer 2" in out
