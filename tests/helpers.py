"""Shared builders for the core tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import lipflow as lf


def all_blocks(dim: int = 4) -> dict[str, lf.Block]:
    """One block of every family and scale/form variant, dimension ``dim``."""
    return {
        "additive": lf.AdditiveCoupling(dim, t=lf.MLP((8,), "tanh")),
        "affine-sigmoid": lf.AffineCoupling(dim, scale=lf.Sigmoid(shift=2.0), t=lf.MLP((8,)), s=lf.MLP((8,))),
        "affine-exp-glow": lf.AffineCoupling(
            dim, scale="exp", form="glow", conditioning="second", s=lf.MLP((8,), init_scale=0.3)
        ),
        "affine-bounded": lf.AffineCoupling(dim, scale=lf.Bounded(0.5, 1.0), t=lf.MLP((8,), "relu")),
        "affine-softclamp": lf.AffineCoupling(dim, scale=lf.SoftClamp(1.5), s=lf.MLP((8,), "elu")),
        "affine-biased": lf.AffineCoupling(dim, scale=lf.Sigmoid(bias=0.1), s=lf.MLP((8,), "swish")),
        "residual-lipswish": lf.Residual(dim, hidden=(8,), coeff=0.7),
        "residual-elu-series": lf.Residual(
            dim, hidden=(8, 8), activation="elu", coeff=0.5, logdet_method="series", series_terms=40
        ),
        "permutation": lf.Permutation(dim, seed=3),
        "reverse": lf.Reverse(dim),
        "linear": lf.InvertibleLinear(dim, seed=2),
        "actnorm": lf.ActNorm(dim),
    }


def sample_inputs(n: int = 6, dim: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim))


def alternating_couplings(kind: str, depth: int = 4, dim: int = 2, hidden: int = 8) -> lf.Flow:
    """``depth`` couplings with tanh MLPs alternating the conditioning half: ``"affine"``
    (sigmoid scale) or ``"additive"``."""
    blocks: list[lf.Block] = []
    for i in range(depth):
        half = "first" if i % 2 == 0 else "second"
        if kind == "affine":
            blocks.append(lf.AffineCoupling(dim, conditioning=half, t=lf.MLP((hidden,)), s=lf.MLP((hidden,))))
        else:
            blocks.append(lf.AdditiveCoupling(dim, conditioning=half, t=lf.MLP((hidden,))))
    return lf.Flow(blocks)


def descendants(root: int) -> set[int]:
    """Every process below ``root`` (Linux: read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive_processes(pids: set[int]) -> set[int]:
    """The processes of ``pids`` that still run (zombies count as gone)."""
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive
