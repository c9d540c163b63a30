"""INN classifiers for the ``classifier`` experiment: a coupling flow F whose output z is read
by a linear softmax head on its first ``head_dims`` coordinates (paper Section 4.2, Table 2).

The classification loss depends on x only through z = F(x), so its gradient can be computed
memory-saving (activations recomputed through the inverse, Gomez et al. 2017) or by ordinary
backprop; :func:`gradient_probe` compares the two.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as onp

from lipflow.blocks import MLP, AdditiveCoupling, AffineCoupling, Block, Flow, Permutation, Sigmoid
from lipflow.errors import LipflowError
from lipflow.experiments.engines import NumpyOps
from lipflow.precision import Precision, resolve_precision
from lipflow.train import gradient_angle, memory_saving_grad, ordinary_grad

__all__ = [
    "ARCHITECTURES",
    "N_CLASSES",
    "ClassifierModel",
    "accuracy",
    "build_classifier",
    "cross_entropy",
    "gradient_probe",
    "head_cross_entropy",
    "one_hot",
]

ARCHITECTURES = ("additive", "affine")
N_CLASSES = 10


@dataclass(frozen=True)
class ClassifierModel:
    """A flow and the width of the head it feeds; params are ``{"flow": [...], "head": {...}}``."""

    flow: Flow
    head_dims: int
    n_classes: int = N_CLASSES

    def init(self, seed: int) -> dict[str, Any]:
        """Flow params from ``seed``; head weights N(0, 1/head_dims), zero bias."""
        rng = onp.random.default_rng(seed + 10_000)
        head = {"weights": rng.standard_normal((self.head_dims, self.n_classes)) / onp.sqrt(self.head_dims),
                "bias": onp.zeros(self.n_classes)}
        return {"flow": self.flow.init(seed), "head": head}

    def logits(self, head: Any, z: Any, ctx: Precision) -> Any:
        """Linear head on the first ``head_dims`` coordinates of z."""
        weights, bias = ctx.cast(head["weights"]), ctx.cast(head["bias"])
        return ctx.dot(z[:, : self.head_dims], weights) + bias


def build_classifier(
    architecture: str, dim: int, depth: int, hidden: tuple[int, ...], head_dims: int, seed: int = 0
) -> ClassifierModel:
    """``depth`` x (random permutation, coupling): additive, or affine with Glow's scale
    g = sigmoid(s + 2) in (0, 1) (realnvp form). Conditioners are swish MLPs whose last layer
    starts at 0.1 of the usual scale, so each block starts near the identity."""
    if architecture not in ARCHITECTURES:
        raise LipflowError(f"unknown architecture {architecture!r}; choose from {', '.join(ARCHITECTURES)}")
    if not 1 <= head_dims <= dim:
        raise LipflowError(f"head_dims must be in [1, {dim}], got {head_dims}")
    blocks: list[Block] = []
    for k in range(depth):
        blocks.append(Permutation(dim, seed=seed * 1000 + k))
        net = MLP(hidden, "swish", init_scale=0.1)
        if architecture == "additive":
            blocks.append(AdditiveCoupling(dim, t=net))
        else:
            blocks.append(AffineCoupling(dim, t=net, s=net, scale=Sigmoid(shift=2.0)))
    return ClassifierModel(Flow(blocks), head_dims)


def one_hot(labels: onp.ndarray, n_classes: int = N_CLASSES) -> onp.ndarray:
    """(n,) integer labels -> (n, n_classes) float64 indicator rows."""
    labels = onp.asarray(labels)
    if labels.ndim != 1 or (labels.size and not (labels.min() >= 0 and labels.max() < n_classes)):
        raise LipflowError(f"labels must be a 1D array of integers in [0, {n_classes})")
    return onp.eye(n_classes)[labels]


def head_cross_entropy(ops: Any, model: ClassifierModel, head: Any, z: Any, targets: Any) -> Any:
    """Mean softmax cross-entropy of the head on z against one-hot ``targets``, written once
    against a backend's namespace ``ops`` (:mod:`lipflow.experiments.engines`)."""
    logits = ops.dot(z[:, : model.head_dims], ops.param(head["weights"])) + ops.param(head["bias"])
    shifted = logits - ops.max(logits, axis=1)
    log_probs = shifted - ops.log(ops.sum(ops.exp(shifted), axis=1))[:, None]
    return -ops.mean(ops.sum(ops.asarray(targets) * log_probs, axis=1))


def cross_entropy(model: ClassifierModel, head: Any, z: Any, targets: onp.ndarray, ctx: Precision) -> Any:
    """Mean softmax cross-entropy of the head on z against one-hot ``targets``, at ``ctx``."""
    return head_cross_entropy(NumpyOps(ctx), model, head, z, targets)


def accuracy(model: ClassifierModel, params: Any, x: onp.ndarray, labels: onp.ndarray,
             ctx: Precision | str = "float32") -> float:
    """Fraction of rows of x whose arg-max logit is the label (non-finite logits count as wrong)."""
    context = resolve_precision(ctx, x)
    with onp.errstate(all="ignore"):
        z = model.flow.forward(params["flow"], context.cast(x), ctx=context)
        logits = context.to_float64(model.logits(params["head"], z, context))
    ok = onp.all(onp.isfinite(logits), axis=1)
    return float(onp.mean(ok & (onp.argmax(onp.where(ok[:, None], logits, 0.0), axis=1) == labels)))


def gradient_probe(
    model: ClassifierModel, x: onp.ndarray, targets: onp.ndarray, ctx: Precision | str
) -> Callable[[int, Any], dict[str, float]]:
    """A ``fit`` monitor: the angle (degrees) between the memory-saving and the ordinary gradient
    of the cross-entropy on the fixed batch (x, targets), and the worst recomputed-input error."""
    context = resolve_precision(ctx, x)
    x_ctx = context.cast(x)

    def output_loss(z: Any, head: Any) -> Any:
        return cross_entropy(model, head, z, targets, context)

    def monitor(step: int, params: Any) -> dict[str, float]:
        with onp.errstate(all="ignore"):
            saving = memory_saving_grad(model.flow, params["flow"], x_ctx, output_loss, params["head"], ctx=context)
            flow_grad, head_grad = ordinary_grad(model.flow, params["flow"], x_ctx, output_loss, params["head"],
                                                 ctx=context)
        return {"angle_deg": gradient_angle((saving.flow_grad, saving.head_grad), (flow_grad, head_grad)),
                "recompute_error": saving.recompute_error, "probe_loss": saving.loss}

    return monitor
