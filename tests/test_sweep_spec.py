"""Sweep specs: validation before any work, the grid, TOML round trip."""

from __future__ import annotations

import pytest

from lipflow.errors import LipflowError
from lipflow.sweep.spec import (
    AXES,
    load_spec,
    parse_depths,
    spec_from_mapping,
    spec_to_toml,
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"colour": "red"}, ["unknown key 'colour'", "axes", "metrics"]),
        ({"axes": {"width": [1]}}, ["unknown axis 'width'", "depth", "precision"]),
        ({"axes": {"block": ["affine", "spline"]}}, ["axes.block", "'spline'", "'additive', 'affine', 'residual'"]),
        ({"axes": {"precision": ["float8"]}}, ["axes.precision", "'float8'", "float16", "mpNN"]),
        ({"axes": {"scale": ["identity"]}}, ["axes.scale", "'identity'", "'sigmoid'"]),
        ({"axes": {"depth": [0, 3]}}, ["axes.depth", "1..", "0"]),
        ({"axes": {"depth": "5:2"}}, ["axes.depth", "start <= stop"]),
        ({"axes": {"depth": "1-5"}}, ["axes.depth", "'1:50'"]),
        ({"axes": {"seed": [-1]}}, ["axes.seed", "non-negative"]),
        ({"axes": {"inputs": []}}, ["axes.inputs is empty"]),
        ({"metrics": ["recon_error", "speed"]}, ["metrics value 'speed'", "'recon_error'", "'sigma_min'"]),
        ({"reference": "float64"}, ["reference", "'auto'", "mp60"]),
        ({"samples": 0}, ["samples", "1.."]),
        ({"coeff": 1.5}, ["coeff", "(0, 1)"]),
        ({"activation": "relu6"}, ["activation value 'relu6'", "'tanh'"]),
        # impossible combinations
        ({"axes": {"block": ["residual"], "conditioner": ["toy"]}}, ["'toy'", "residual", "'mlp'"]),
        ({"axes": {"block": ["affine"], "conditioner": ["toy"]}, "dim": 3}, ["'toy'", "dim = 2"]),
        ({"axes": {"block": ["residual"]}, "activation": "relu"}, ["'relu'", "residual", "'lipswish'"]),
    ],
)
def test_bad_specs_name_the_key_and_the_allowed_values(data, expected):
    with pytest.raises(LipflowError) as error:
        spec_from_mapping(data)
    for text in expected:
        assert text in str(error.value)


def test_grid_order_defaults_and_collapsed_axes():
    spec = spec_from_mapping(
        {"axes": {"block": ["additive", "affine"], "scale": ["sigmoid", "exp"], "depth": [1, 2], "seed": [3]}}
    )
    assert spec.axes["precision"] == AXES["precision"]
    # additive has no scale: its two scale values collapse into one "-" cell
    additive = [c for c in spec.cells if c.block == "additive"]
    affine = [c for c in spec.cells if c.block == "affine"]
    assert {c.scale for c in additive} == {"-"} and len(additive) == 3 * 2
    assert len(affine) == 2 * 3 * 2
    assert [c.depth for c in spec.cells[:2]] == [1, 2]  # depth varies fastest
    assert len({c.key for c in spec.cells}) == len(spec.cells)


def test_toy_cells_use_the_identity_scale_and_auto_reference():
    spec = spec_from_mapping({"axes": {"block": ["affine"], "conditioner": ["toy"], "depth": "1:70"}})
    assert {c.scale for c in spec.cells} == {"identity"}
    assert spec.reference == "mp110"  # max(50, 70 + 40) digits, as Figure 1


def test_depth_forms():
    assert parse_depths("1:5") == [1, 2, 3, 4, 5]
    assert parse_depths("2:10:4") == [2, 6, 10]
    assert parse_depths({"start": 3, "stop": 4}) == [3, 4]
    assert parse_depths(["1:2", "7"]) == [1, 2, 7]
    assert parse_depths(5) == [5]


def test_toml_round_trip_and_overrides(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text('name = "t"\nmetrics = ["recon_error"]\n[axes]\nblock = "affine"\ndepth = "1:3"\n')
    spec = load_spec(path)
    assert spec.axes["block"] == ("affine",) and spec.axes["depth"] == (1, 2, 3)
    again = tmp_path / "again.toml"
    again.write_text(spec_to_toml(spec))
    assert load_spec(again) == spec and load_spec(again).cells == spec.cells
    overridden = load_spec(path, {"precision": ["float64"], "samples": 2})
    assert overridden.axes["precision"] == ("float64",) and overridden.samples == 2


def test_unreadable_spec_files(tmp_path):
    with pytest.raises(LipflowError, match="does not exist"):
        load_spec(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(LipflowError, match="not valid TOML"):
        load_spec(bad)
