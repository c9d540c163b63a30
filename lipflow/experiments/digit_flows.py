"""Density flows on the 8x8 digits for the ``ood`` and ``attack`` experiments (paper Section 4.1,
Fig. 4 right and Appendix E): a Glow-like affine coupling flow, an additive coupling flow and a
residual flow, trained with the NF loss (Eq. 7) on dequantised digits. Nothing is cached on disk.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import autograd.numpy as anp
import numpy as onp

from lipflow.blocks import MLP, ActNorm, AdditiveCoupling, AffineCoupling, Block, Flow, Permutation, Residual, Sigmoid
from lipflow.blocks.conditioners import ACTIVATIONS
from lipflow.errors import LipflowError
from lipflow.experiments.backend import Backend, NumpyBackend, add_backend_arguments
from lipflow.experiments.common import check_positive, positive_int, stopwatch
from lipflow.experiments.data import Digits
from lipflow.precision import Precision, precision
from lipflow.train import bits_per_dim, nf_loss
from lipflow.train.losses import standard_normal_logpdf

__all__ = [
    "DIGIT_DIM",
    "DIGIT_MODELS",
    "FULL",
    "DigitFlowConfig",
    "TrainedDigitFlow",
    "add_digit_flow_arguments",
    "build_digit_flow",
    "data_init_actnorms",
    "dequantise",
    "digit_flow_config",
    "estimated_nf_loss",
    "single_threaded_blas",
    "train_digit_flow",
]

DIGIT_DIM = 64
DIGIT_MODELS = ("affine", "additive", "residual")


@dataclass(frozen=True)
class DigitFlowConfig:
    """Sizes of a digit flow and its training; the defaults are CPU-sized."""

    depth: int = 4
    hidden: tuple[int, ...] = (64,)
    steps: int = 300
    batch: int = 128
    lr: float = 1e-3
    residual_coeff: float = 0.9
    series_terms: int = 6
    train_precision: str = "float32"


#: the authors' sizes (``--full``) for the digit flows of ``attack`` and ``ood``
FULL = DigitFlowConfig(depth=16, hidden=(256, 256), steps=5000, batch=256)


def add_digit_flow_arguments(parser: argparse.ArgumentParser, default_models: str,
                             defaults: DigitFlowConfig | None = None) -> None:
    """The flags that size and train the digit flows, shared by ``attack`` and ``ood``
    (``defaults``: the experiment's own default sizes, named in the help)."""
    d = defaults or DigitFlowConfig()
    parser.add_argument("--depth", type=positive_int, help=f"flow steps per model (default {d.depth}; --full: 16)")
    parser.add_argument("--steps", type=positive_int, help=f"Adam steps per model (default {d.steps}; --full: 5000)")
    parser.add_argument("--batch", type=positive_int, help=f"batch size (default {d.batch}; --full: 256)")
    parser.add_argument("--hidden", type=positive_int, nargs="+",
                        help=f"hidden widths (default {' '.join(map(str, d.hidden))}; --full: 256 256)")
    parser.add_argument("--lr", type=float, help=f"Adam learning rate (default {d.lr:g})")
    parser.add_argument("--models", nargs="+", choices=DIGIT_MODELS, help=f"which flows (default: {default_models})")
    add_backend_arguments(parser)


def digit_flow_config(args: argparse.Namespace, defaults: DigitFlowConfig | None = None,
                      quick: DigitFlowConfig | None = None) -> DigitFlowConfig:
    """The :class:`DigitFlowConfig` of the flags of :func:`add_digit_flow_arguments` (and ``--full``,
    or ``--quick`` when the experiment has a ``quick`` size), starting from ``defaults``."""
    if args.full and getattr(args, "quick", False):
        raise LipflowError("--full and --quick exclude each other; pick one")
    if args.full:
        config = FULL
    elif quick is not None and getattr(args, "quick", False):
        config = quick
    else:
        config = defaults or DigitFlowConfig()
    changes = {key: getattr(args, key) for key in ("depth", "steps", "batch") if getattr(args, key)}
    if args.hidden:
        changes["hidden"] = tuple(args.hidden)
    check_positive("--lr", args.lr)
    if args.lr is not None:
        changes["lr"] = args.lr
    return replace(config, **changes)


@dataclass
class TrainedDigitFlow:
    """A trained flow with its parameters and training record."""

    name: str
    flow: Flow
    params: Any
    losses: list[float]
    nonfinite_steps: int
    test_bpd: float
    seconds: float


def build_digit_flow(name: str, config: DigitFlowConfig) -> Flow:
    """``depth`` steps of ActNorm, a fixed random permutation and a transform.

    affine: Glow's coupling (x2 + t(x1)) * sigmoid(s(x1) + 2), scale in (0, 1);
    additive: x2 + t(x1); residual: x + g(x), g a LipSwish MLP with Lip(g) <= ``residual_coeff``
    and the exact log-determinant. Coupling conditioners are swish MLPs of width ``hidden``.
    """
    if name not in DIGIT_MODELS:
        raise LipflowError(f"unknown digit flow {name!r}; choose from {', '.join(DIGIT_MODELS)}")
    blocks: list[Block] = []
    for k in range(config.depth):
        blocks.append(ActNorm(DIGIT_DIM))
        blocks.append(Permutation(DIGIT_DIM, seed=1000 + k))
        net = MLP(tuple(config.hidden), "swish")
        if name == "affine":
            blocks.append(AffineCoupling(DIGIT_DIM, t=net, s=net, scale=Sigmoid(shift=2.0), form="glow"))
        elif name == "additive":
            blocks.append(AdditiveCoupling(DIGIT_DIM, t=net))
        else:
            blocks.append(Residual(DIGIT_DIM, hidden=tuple(config.hidden), coeff=config.residual_coeff,
                                   on_nonconvergence="ignore"))
    return Flow(blocks)


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit BLAS to one thread while the block runs. These flows multiply small matrices
    (64 x 64 and the like), where a multi-threaded BLAS on a busy machine spends far more time
    synchronising its threads than computing (measured: 64 x 64 SVDs 40x slower with threads).
    Uses threadpoolctl (installed with scikit-learn) and does nothing without it."""
    try:
        from threadpoolctl import threadpool_limits
    except ModuleNotFoundError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def dequantise(x: onp.ndarray, bin_width: float, rng: onp.random.Generator) -> onp.ndarray:
    """x + U(-bin_width/2, bin_width/2) per pixel: a sample from the dequantisation box."""
    return x + rng.uniform(-0.5 * bin_width, 0.5 * bin_width, size=onp.shape(x))


def data_init_actnorms(flow: Flow, params: list[Any], x: onp.ndarray) -> list[Any]:
    """Glow's data-dependent initialisation: every ActNorm standardises the batch it receives."""
    params = list(params)
    h = onp.asarray(x, dtype=onp.float64)
    for index, block in enumerate(flow.blocks):
        if isinstance(block, ActNorm):
            params[index] = block.data_init(h)
        h = block.forward(params[index], h, ctx="float64")
    return params


def _residual_logdet_estimate(block: Residual, params: Any, x: Any, probe: Any, terms: int, ctx: Precision) -> Any:
    """Hutchinson's estimate of log det(I + J_g) = sum_k (-1)^(k+1) tr(J_g^k)/k, truncated after
    ``terms`` terms, with one probe per sample: v J^k v^T from repeated vector-Jacobian products
    through g's layers (O(n d h) per term instead of the (n, d, d) Jacobian)."""
    phi = ACTIVATIONS[block.activation]
    weights, biases = params["weights"], params["biases"]
    derivatives, h = [], x
    for w, b in zip(weights[:-1], biases[:-1], strict=True):
        h = ctx.dot(h, w) + b
        derivatives.append(phi.derivative(ctx, h))
        h = phi.apply(ctx, h)
    total, u = 0.0, probe
    for k in range(1, terms + 1):
        for w, slope in zip(weights[:-1], derivatives, strict=True):
            u = ctx.dot(u, w) * slope
        u = ctx.dot(u, weights[-1])
        total = total + ctx.const((1 if k % 2 else -1) / k) * ctx.sum(u * probe, axis=1)
    return total


def estimated_nf_loss(flow: Flow, params: list[Any], x: Any, probes: Any, terms: int, ctx: Precision | str) -> Any:
    """The NF loss (Eq. 7) with every residual block's log-det replaced by the Hutchinson series
    estimate (as Residual Flows train); other blocks use their exact log-det. ``probes`` has one
    (n, d) Rademacher array per block. Used for training only: evaluation uses the exact loss."""
    context = precision(ctx) if isinstance(ctx, str) else ctx
    prepared = context.cast(flow._prepare(params))
    h, logdet = context.cast(x), 0.0
    for block, p, probe in zip(flow.blocks, prepared, probes, strict=True):
        if isinstance(block, Residual):
            logdet = logdet + _residual_logdet_estimate(block, p, h, context.cast(probe), terms, context)
        else:
            logdet = logdet + block._logdet(p, h, context)
        h = block._forward(p, h, context)
    return -anp.mean(standard_normal_logpdf(h, context) + logdet)


def train_digit_flow(
    name: str, digits: Digits, config: DigitFlowConfig, seed: int = 0, progress: bool = True,
    backend: Backend | None = None,
) -> TrainedDigitFlow:
    """Adam on the NF loss over freshly dequantised training batches on ``backend`` (NumPy by
    default; the torch backend trains residual blocks with their exact log-det rather than the
    series estimate); test bits/dim at float64 with lipflow's blocks."""
    backend = backend or NumpyBackend()
    flow = build_digit_flow(name, config)
    rng = onp.random.default_rng(seed)
    start = dequantise(digits.x_train[rng.choice(len(digits.x_train), 512, replace=False)], digits.bin_width, rng)
    params = data_init_actnorms(flow, flow.init(seed), start)

    estimate = name == "residual"

    estimate = estimate and backend.name == "numpy"

    def objective(p: Any, batch: tuple[onp.ndarray, onp.ndarray], step: int) -> Any:
        x, probes = batch
        return estimated_nf_loss(flow, p, x, probes, config.series_terms, config.train_precision)

    def sample(step: int, generator: onp.random.Generator) -> onp.ndarray:
        rows = generator.choice(len(digits.x_train), config.batch, replace=False)
        return dequantise(digits.x_train[rows], digits.bin_width, generator)

    def sample_with_probes(step: int, generator: onp.random.Generator) -> tuple[onp.ndarray, onp.ndarray]:
        x = sample(step, generator)
        return x, generator.choice([-1.0, 1.0], size=(len(flow.blocks), config.batch, DIGIT_DIM))

    with stopwatch() as clock:
        result = backend.fit_nf(flow, params, sample_with_probes if estimate else sample, steps=config.steps,
                                lr=config.lr, seed=seed, train_precision=config.train_precision, progress=progress,
                                description=f"digits {name}", objective=objective if estimate else None)
    test = dequantise(digits.x_test, digits.bin_width, onp.random.default_rng(seed + 7))
    with onp.errstate(all="ignore"):
        nll = float(nf_loss(flow, result.params, test, ctx="float64"))
    return TrainedDigitFlow(name, flow, result.params, result.losses, result.nonfinite_steps,
                            bits_per_dim(nll, DIGIT_DIM), clock["seconds"])
