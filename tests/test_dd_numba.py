"""The compiled double-double kernels equal the NumPy kernels bit for bit (so the NumPy
kernels' proven bounds, theory/lem-dd-expm1.md, hold for both); the backend switch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lipflow.errors import LipflowError
from lipflow.precision import accel, precision
from lipflow.precision import dd_kernels as k
from tests.helpers import alternating_couplings

SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 709.7, 710.0, -745.0, -746.0, 800.0, -800.0,
                    1e-310, -1e-310, 5e-324, 350.0, -350.0, 700.5, 0.34657359027997264, -0.3465735902799726])


def _inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scales = (1e-300, 1e-8, 1e-3, 1.0, 5.0, 30.0, 400.0)
    hi = np.concatenate([rng.standard_normal(300) * s for s in scales] + [SPECIAL])
    lo = hi * rng.standard_normal(hi.size) * 2.0**-54
    lo[~np.isfinite(hi)] = 0.0
    return hi, lo


def _same(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    pairs = zip(a, b, strict=True)
    return all(np.array_equal(np.asarray(x).view(np.int64), np.asarray(y).view(np.int64)) for x, y in pairs)


def test_backend_choice_and_errors():
    with accel.kernels("numpy"):
        assert accel.active_backend() == "numpy"
    with pytest.raises(LipflowError, match="use one of"):
        with accel.kernels("cuda"):
            pass
    expected = "numba" if accel.numba_available() else "numpy"
    assert accel.active_backend() == expected


def test_import_does_not_load_numba():
    code = "import lipflow, sys; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture(scope="module")
def dn():
    pytest.importorskip("numba", reason="needs the fast extra: pip install 'lipflow[fast]'")
    from lipflow.precision import dd_numba

    return dd_numba


@pytest.mark.parametrize("name", ["exp", "expm1", "tanh", "sigmoid"])
def test_unary_bit_identical(dn, name):
    hi, lo = _inputs()
    with np.errstate(all="ignore"):
        expected = getattr(k, name)(hi, lo)
    assert _same(dn.unary(name, hi, lo), expected)


@pytest.mark.parametrize("name", ["add", "mul", "div", "add_double", "mul_double"])
def test_binary_bit_identical_with_broadcasting(dn, name):
    ah, al = _inputs(1)
    ah, al = ah.reshape(-1, 1)[:600], al.reshape(-1, 1)[:600]
    bh, bl = _inputs(2)
    bh, bl = bh[:7], bl[:7]
    double = name.endswith("_double")
    with np.errstate(all="ignore"):
        expected = getattr(k, name)(ah, al, bh) if double else getattr(k, name)(ah, al, bh, bl)
    got = dn.binary(name, ah, al, bh) if double else dn.binary(name, ah, al, bh, bl)
    assert got[0].shape == (600, 7)
    assert _same(got, expected)


@pytest.mark.parametrize("shape", [(50, 32, 1), (40, 1, 32), (7, 5, 3), (3, 0, 2), (9, 33, 2), (1, 17, 1)])
def test_dot_bit_identical(dn, shape):
    n, depth, m = shape
    rng = np.random.default_rng(depth)
    a = rng.standard_normal((n, depth)) * 10.0 ** rng.integers(-5, 5, (n, depth))
    b = rng.standard_normal((depth, m))
    al, bl = a * rng.standard_normal(a.shape) * 2.0**-54, b * 2.0**-55
    assert _same(dn.dot(a, al, b, bl), k.dot(a, al, b, bl))


@pytest.mark.parametrize("kind", ["affine", "additive"])
def test_flow_bit_identical(dn, kind):
    flow = alternating_couplings(kind)
    params = flow.init(seed=0)
    x = np.random.default_rng(3).standard_normal((64, 2))
    dd = precision("dd")
    results = {}
    for backend in ("numpy", "numba"):
        with accel.kernels(backend):
            z = flow.forward(params, x, ctx=dd)
            xr = flow.inverse(params, z, ctx=dd)
        results[backend] = (z.hi, z.lo, xr.hi, xr.lo)
    assert _same(results["numpy"], results["numba"])
