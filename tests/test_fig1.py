"""The paper's Figure 1 toy, reproduced exactly where exact answers exist."""

from __future__ import annotations

import csv
import math
import subprocess
import sys

import numpy as np
import pytest

from lipflow.experiments.fig1 import COLUMNS, run_fig1


@pytest.fixture(scope="module")
def rows():
    return run_fig1(max_depth=60, precisions=("float16", "float32", "float64"))


def _select(rows, block, precision):
    return [r for r in rows if r.block == block and r.precision == precision]


def test_affine_spectrum_is_exactly_powers_of_a_tenth(rows):
    reference = rows[-1].precision
    assert reference.startswith("mp")
    for r in _select(rows, "affine", reference):
        assert r.sigma_max == 1.0
        assert math.isclose(r.sigma_min, 0.1**r.depth, rel_tol=1e-14)  # float64 storage of mp values
        assert math.isclose(r.cond, 10.0**r.depth, rel_tol=1e-13)


def test_additive_spectrum_is_exactly_one(rows):
    for r in _select(rows, "additive", "float32"):
        assert (r.sigma_min, r.sigma_max, r.cond) == (1.0, 1.0, 1.0)


def test_affine_float32_error_grows_tenfold_per_layer_until_inf(rows):
    errors = np.array([r.recon_error for r in _select(rows, "affine", "float32")])
    first_inf = int(np.argmax(~np.isfinite(errors)))
    assert first_inf > 30 and not np.any(np.isfinite(errors[first_inf:]))  # overflows and stays inf
    growth = errors[10:first_inf] / errors[9 : first_inf - 1]
    assert 8 < np.exp(np.mean(np.log(growth))) < 12.5  # geometric mean ~ 1/g = 10


def test_additive_stays_at_rounding_level(rows):
    for precision, u in (("float16", 2.0**-11), ("float32", 2.0**-24), ("float64", 2.0**-53)):
        errors = [r.recon_error for r in _select(rows, "additive", precision)]
        # x2 + L t - L t: at most 2L roundings of numbers below 1 + 60 * 0.124 < 8.5
        assert max(errors) <= 2 * 60 * u * 8.5


def test_cli_writes_the_csv_contract(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lipflow", "reproduce", "fig1", "--out", str(tmp_path), "--max-depth", "12"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote" in result.stdout
    with open(tmp_path / "fig1.csv") as stream:
        table = list(csv.DictReader(stream))
    assert tuple(table[0]) == COLUMNS
    assert len(table) == 2 * 4 * 12
    assert any(r["recon_error"] == "inf" for r in table if r["precision"] == "float16")
    assert (tmp_path / "fig1.png").stat().st_size > 10_000
    assert not list(tmp_path.glob(".*tmp"))
