"""The resumable scale-study script: rows appended per finished run, finished rows skipped."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scale_study.py"


def _load():
    spec = importlib.util.spec_from_file_location("scale_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(path):
    with open(path) as stream:
        return list(csv.DictReader(stream))


def test_study_appends_resumes_and_reports(tmp_path, capsys):
    study = _load()
    out = tmp_path / "study.csv"
    args = ["checkerboard", "--out", str(out), "--seeds", "0", "--models", "affine", "--grid", "1:2:4:0.001"]
    assert study.main(args) == 0
    first = _rows(out)
    assert len(first) == 1 and first[0]["model"] == "affine" and float(first[0]["cpu_seconds"]) >= 0
    assert study.main([*args[:4], "0", "1", *args[5:]]) == 0  # seed 0 done: only seed 1 runs
    second = _rows(out)
    assert [r["seed"] for r in second] == ["0", "1"]
    assert second[0] == first[0]
    capsys.readouterr()
    assert study.main(["checkerboard", "--out", str(out), "--report", "--plot", str(tmp_path / "s.png")]) == 0
    report = capsys.readouterr().out
    assert "| affine | 1 x 4, 2 steps, lr 0.001 | 2 |" in report
    assert (tmp_path / "s.png").stat().st_size > 0


@pytest.mark.parametrize(("name", "grid", "models"), [
    ("ood", "1:2:4:0.001", ["affine", "residual"]),
    ("classifier", "2:2:4:0.01", ["affine/none", "affine/nf 0.01"]),
    ("regression2d", "1:2:10x10:0.01", ["none", "nf 1e-06"]),
])
def test_new_studies_record_every_model_and_report(name, grid, models, tmp_path, capsys):
    study = _load()
    out = tmp_path / "study.csv"
    assert study.main([name, "--out", str(out), "--seeds", "0", "--grid", grid, "--models", *models]) == 0
    rows = _rows(out)
    assert [r["model"] for r in rows] == models
    metric = study.METRICS[name][1]
    assert all(r[metric] != "" for r in rows)
    capsys.readouterr()
    assert study.main([name, "--out", str(out), "--report", "--plot", str(tmp_path / "s.png")]) == 0
    assert f"| {models[0]} |" in capsys.readouterr().out
    assert (tmp_path / "s.png").stat().st_size > 0
