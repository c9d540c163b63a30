"""Sweep tables, figures and the `lipflow sweep` / `lipflow report` commands."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lipflow.cli.main import main
from lipflow.sweep import load_spec

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sweep_spec.toml"
TOY = ["--block", "additive", "affine", "--conditioner", "toy", "--inputs", "ones", "--precision", "float16",
       "float64", "--depth", "1:14", "--metrics", "recon_error", "sigma_min", "sigma_max", "cond"]


@pytest.fixture(scope="module")
def toy_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "sweep"
    assert main(["sweep", *TOY, "--out", str(out), "--no-progress", "--workers", "1"]) == 0
    return out


def test_sweep_writes_tables_and_nonempty_figures(toy_sweep):
    with open(toy_sweep / "results.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 2 * 2 * 14 * 4
    affine16 = {int(r["depth"]): float(r["value"]) for r in rows
                if r["block"] == "affine" and r["precision"] == "float16" and r["metric"] == "recon_error"}
    first_inf = min(d for d, v in affine16.items() if v == float("inf"))
    summary = (toy_sweep / "summary.md").read_text()
    assert "| affine | toy | identity | ones | float16 | 14 | inf (1/1 non-finite) |" in summary
    assert summary.rstrip().splitlines()[-2].endswith(f"| {first_inf} |")  # first non-finite depth
    figures = sorted(p.name for p in (toy_sweep / "figures").iterdir())
    for stem in ("recon_error_vs_depth", "spectra_vs_depth", "heatmap_recon_error_depth_precision"):
        png, pdf = toy_sweep / "figures" / f"{stem}.png", toy_sweep / "figures" / f"{stem}.pdf"
        assert f"{stem}.png" in figures and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert pdf.read_bytes()[:5] == b"%PDF-"
        assert png.stat().st_size > 20_000 and pdf.stat().st_size > 5_000


def test_report_on_a_partial_sweep_with_chosen_heatmap_axes(toy_sweep, tmp_path, capsys):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "spec.toml").write_bytes((toy_sweep / "spec.toml").read_bytes())
    lines = (toy_sweep / "cells.csv").read_text().splitlines(keepends=True)
    (partial / "cells.csv").write_text("".join(lines[: 1 + 20 * 4]))
    assert main(["report", str(partial), "--heatmap", "precision", "block"]) == 0
    assert "20 of 56 cells finished" in (partial / "summary.md").read_text()
    assert (partial / "figures" / "heatmap_recon_error_precision_block.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sweep", "--out", "{tmp}/x", "--block", "spline"], "axes.block value 'spline'"),
        (["sweep", str(EXAMPLE)], "--out DIR"),
        (["sweep", "--resume", "{tmp}/none"], "not a sweep folder"),
        (["sweep", str(EXAMPLE), "--resume", "{tmp}"], "--resume DIR continues the spec saved"),
        (["sweep", "--out", "{tmp}/x", "--workers", "0"], "--workers must be at least 1"),
        (["report", "{tmp}"], "not a sweep folder"),
    ],
)
def test_user_mistakes_are_one_line_errors(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not (tmp_path / "x").exists()  # nothing written before validation


def test_bad_heatmap_axes(toy_sweep, capsys):
    assert main(["report", str(toy_sweep), "--heatmap", "depth", "depth", "--no-figures"]) == 2
    assert "heatmap axes" in capsys.readouterr().err


def test_example_spec_is_a_short_valid_spec():
    lines = [line for line in EXAMPLE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert len(lines) <= 10
    spec = load_spec(EXAMPLE)
    assert spec.name == "first-sweep" and len(spec.cells) == 2 * 3 * 12 * 2


def test_the_docs_describe_every_metric_and_axis():
    from lipflow.sweep.cells import BUDGET_METRICS, METRICS
    from lipflow.sweep.spec import AXES, SETTINGS

    page = (Path(__file__).resolve().parents[1] / "docs" / "sweeps.md").read_text()
    for name in (*METRICS, *BUDGET_METRICS, *AXES, *SETTINGS):
        assert f"`{name}`" in page, name


def test_reproduce_fig1_runs_through_a_resumable_sweep_folder(tmp_path, capsys):
    argv = ["reproduce", "fig1", "--out", str(tmp_path), "--no-progress", "--workers", "1"]
    assert main([*argv, "--max-depth", "3"]) == 0
    first = (tmp_path / "fig1.csv").read_bytes()
    assert main([*argv, "--max-depth", "3"]) == 0
    assert "(0 cells computed, 24 reused)" in capsys.readouterr().out
    assert (tmp_path / "fig1.csv").read_bytes() == first
    # other options replace Figure 1's own sweep folder, as they replace fig1.csv
    assert main([*argv, "--max-depth", "4"]) == 0
    assert "(32 cells computed, 0 reused)" in capsys.readouterr().out
    assert load_spec(tmp_path / "sweep" / "spec.toml").axes["depth"] == (1, 2, 3, 4)
