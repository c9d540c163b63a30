"""Data sets of the experiments: the 2D checkerboard, the nearly singular 2D regression and the
8x8 digits (scikit-learn's bundled copy, available offline)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as onp

from lipflow.errors import MissingExtraError

__all__ = ["DATA_BOX", "Digits", "checkerboard", "load_digits", "regression_pairs"]

#: the checkerboard's support is [-4, 4]^2
DATA_BOX = 4.0


def checkerboard(n: int, rng: onp.random.Generator) -> onp.ndarray:
    """n points of the 2D checkerboard on [-4, 4]^2 (paper Fig. 3; THEORY-NOTES set-up)."""
    x1 = rng.uniform(-2.0, 2.0, n)
    x2 = rng.uniform(0.0, 1.0, n) - 2.0 * rng.integers(0, 2, n) + onp.mod(onp.floor(x1), 2)
    return 2.0 * onp.stack([x1, x2], axis=1)


def regression_pairs(n: int, rng: onp.random.Generator, small_std: float = 1e-12) -> tuple[onp.ndarray, onp.ndarray]:
    """(x, y) of the nearly singular regression (paper Fig. 6): x ~ N(0, I_2) and
    y = (x_1, small_std * x_2), so the target map diag(1, 1e-12) squeezes the plane onto a line
    (y_2 has variance 1e-24)."""
    x = rng.standard_normal((n, 2))
    return x, x * onp.array([1.0, small_std])


@dataclass(frozen=True)
class Digits:
    """8x8 digits scaled to [0, 1] (pixel / 16), split into train and test."""

    x_train: onp.ndarray
    y_train: onp.ndarray
    x_test: onp.ndarray
    y_test: onp.ndarray

    #: quantisation bin width after scaling (the dequantisation box is half of it each way)
    bin_width: float = 1.0 / 16.0


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> Digits:
    """scikit-learn's bundled 8x8 digits (1797 images, 64 pixels in 0..16), shuffled and split."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ModuleNotFoundError:
        raise MissingExtraError(
            "this experiment uses scikit-learn's bundled 8x8 digits; install it with "
            "pip install 'lipflow[experiments]' (or pip install scikit-learn)",
            name="sklearn",
        ) from None
    data = sklearn_digits()
    x = data.data.astype(onp.float64) / 16.0
    y = data.target.astype(onp.int64)
    order = onp.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_test = round(test_fraction * len(x))
    return Digits(x[n_test:], y[n_test:], x[:n_test], y[:n_test])
