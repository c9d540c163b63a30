"""Saving and loading flows: exact round trip, no pickle, clear errors for bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lipflow as lf
from tests.helpers import all_blocks, sample_inputs


def test_save_load_round_trip_is_exact(tmp_path):
    flow = lf.Flow(list(all_blocks().values()))
    params = flow.init(seed=9)
    lf.save_flow(tmp_path / "model", flow, params)
    loaded, loaded_params = lf.load_flow(tmp_path / "model")
    assert loaded == flow
    x = sample_inputs()
    assert np.array_equal(loaded.forward(loaded_params, x), flow.forward(params, x))


def test_single_block_and_config(tmp_path):
    block = lf.AffineCoupling(2, t=lf.Constant(0.123456789), s=lf.Constant(0.1), scale="identity", conditioning=(0,))
    assert block.config()["scale"] == {"type": "Identity"}
    lf.save_flow(tmp_path / "toy.json", block, block.init())
    assert lf.load_flow(tmp_path / "toy")[0] == block


def test_bad_files_are_explained(tmp_path):
    with pytest.raises(lf.LipflowError, match="does not exist"):
        lf.load_flow(tmp_path / "nothing")
    flow = lf.Flow([lf.AdditiveCoupling(2), lf.Reverse(2)])
    lf.save_flow(tmp_path / "m", flow, flow.init())
    document = json.loads((tmp_path / "m.json").read_text())
    document["architecture"]["blocks"][0]["type"] = "Evil"
    (tmp_path / "m.json").write_text(json.dumps(document))
    with pytest.raises(lf.LipflowError, match="unknown type 'Evil'"):
        lf.load_flow(tmp_path / "m")
    other = lf.Flow([lf.AdditiveCoupling(2, t=lf.MLP((5,))), lf.Reverse(2)])
    lf.save_flow(tmp_path / "n", flow, flow.init())
    document = json.loads((tmp_path / "n.json").read_text())
    document["architecture"] = other.config()
    (tmp_path / "n.json").write_text(json.dumps(document))
    with pytest.raises(lf.LipflowError, match="does not match the architecture"):
        lf.load_flow(tmp_path / "n")


def test_pickled_arrays_are_refused(tmp_path):
    flow = lf.Flow([lf.AdditiveCoupling(2)])
    lf.save_flow(tmp_path / "m", flow, flow.init())
    np.savez(tmp_path / "m.npz", **{"p/0/t/weights/0": np.array([{"evil": 1}], dtype=object)})
    with pytest.raises(lf.LipflowError, match="without pickle"):
        lf.load_flow(tmp_path / "m")
