"""Each finished experiment runs at tiny size through ``lipflow reproduce`` and its example
script, and writes its tables and figure."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import pytest

from lipflow.cli.main import main

pytest.importorskip("sklearn", reason="needs the experiments extra: pip install 'lipflow[experiments]'")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

TINY = {
    "checkerboard": ["--depth", "2", "--hidden", "8", "--steps", "3", "--batch", "32", "--grid-step", "1.0"],
    "iresnet": ["--depth", "2", "--points", "8", "--max-iterations", "5"],
    "remedies": ["--depth", "1", "--steps", "2", "--samples", "4"],
}
FILES = {
    "checkerboard": ["checkerboard.csv", "checkerboard_grid.csv", "checkerboard.png"],
    "iresnet": ["iresnet_coeff.csv", "iresnet_iterations.csv", "iresnet.png"],
    "remedies": ["remedies.csv", "remedies.png", "remedies_failures.csv", "remedies_failures.png"],
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_reproduce_writes_tables_and_figure(name, tmp_path, capsys):
    out = tmp_path / name
    assert main(["reproduce", name, "--out", str(out), "--no-progress", *TINY[name]]) == 0
    for file in FILES[name]:
        assert (out / file).stat().st_size > 0, file
    with open(out / FILES[name][0]) as stream:
        rows = list(csv.DictReader(stream))
    assert rows
    assert "wrote" in capsys.readouterr().out


def test_checkerboard_counts_every_grid_point(tmp_path):
    out = tmp_path / "cb"
    assert main(["reproduce", "checkerboard", "--out", str(out), "--no-progress", *TINY["checkerboard"]]) == 0
    with open(out / "checkerboard.csv") as stream:
        rows = list(csv.DictReader(stream))
    for model in ("affine", "modified", "residual"):
        total = sum(int(r["n"]) for r in rows if r["model"] == model)
        assert total == 16 * 16  # [-8, 8)^2 at step 1: inside + outside cover the grid


def test_checkerboard_quick_logdet_respects_the_scale_ranges(tmp_path):
    """--quick is the smoke size; the float64 log|det J_F| column obeys the scale ranges exactly:
    g in (0, 1) gives log det < 0, g in (0.5, 1) gives depth * log(0.5) < log det < 0."""
    out = tmp_path / "quick"
    assert main(["reproduce", "checkerboard", "--quick", "--out", str(out), "--no-progress"]) == 0
    with open(out / "checkerboard.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert sum(int(r["n"]) for r in rows if r["model"] == "affine") == 16 * 16
    logdets = {(r["model"], r["region"]): float(r["min_logdet"]) for r in rows}
    assert all(math.isfinite(v) for v in logdets.values())
    assert all(v < 0 for (model, _), v in logdets.items() if model in ("affine", "modified"))
    assert all(v > 2 * math.log(0.5) for (model, _), v in logdets.items() if model == "modified")  # 2 blocks


def test_checkerboard_full_and_quick_exclude_each_other(capsys):
    assert main(["reproduce", "checkerboard", "--full", "--quick", "--no-progress"]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_iresnet_banach_bound_holds(tmp_path):
    out = tmp_path / "ir"
    assert main(["reproduce", "iresnet", "--out", str(out), "--no-progress", *TINY["iresnet"]]) == 0
    with open(out / "iresnet_iterations.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert all(int(r["bound_violations"]) == 0 for r in rows)
    assert all(math.isfinite(float(r["max_error"])) for r in rows)


@pytest.mark.parametrize("name", sorted(TINY))
def test_example_script_runs(name, tmp_path):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.__doc__ and len(module.__doc__.strip().splitlines()) == 1
    assert module.main(["--out", str(tmp_path), "--no-progress", *TINY[name]]) == 0


def test_bad_size_is_a_clean_error(capsys):
    with pytest.raises(SystemExit):
        main(["reproduce", "checkerboard", "--steps", "0"])
    assert "positive integer" in capsys.readouterr().err
    assert main(["reproduce", "checkerboard", "--grid-step", "9", "--steps", "1", "--no-progress"]) == 2
