"""One loss definition, two engines: array namespaces and training loops for the backends.

An experiment writes its loss once as ``loss(ops, params, batch, step)`` against a small
namespace ``ops`` (the flow's ``forward``/``inverse``/``forward_and_logdet``, ``sum``, ``mean``,
``max``, ``exp``, ``log``, ``dot``, ``asarray``, ``param``, ``const``) and declares which
top-level parts of its params are flows (:class:`Model`). :class:`NumpyOps` runs the loss on
lipflow's blocks under HIPS autograd at a precision context; :class:`TorchOps` runs the same
loss on the flows exported by :func:`lipflow.interop.torch.to_torch` (one ``nn.Module`` per
flow, the other parts as tensors), and :func:`torch_fit` mirrors :func:`lipflow.train.fit`
(same batches from the same seed, non-finite steps skipped and counted, monitors called with
float64 master params so evaluation always runs on lipflow's blocks).

The shared pieces every experiment needs are here too, written once against ``ops``: the NF
negative log-likelihood (paper Eq. 7) and the bi-directional FD penalty (paper Eq. 6).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import autograd.numpy as anp
import numpy as onp

from lipflow.blocks import Flow
from lipflow.errors import LipflowError
from lipflow.precision import Precision, precision
from lipflow.train import AdamConfig, FDRegulariser, TrainResult, fit

__all__ = [
    "Loss",
    "Model",
    "NumpyOps",
    "TorchOps",
    "fd_penalty",
    "loss_and_gradient",
    "nf_nll",
    "numpy_fit",
    "torch_dtype",
    "torch_fit",
]

Loss = Callable[[Any, Any, Any, int], Any]
"""loss(ops, params, batch, step) -> scalar; ``params`` as the backend holds them."""
Monitor = Callable[[int, Any], dict[str, float]]


@dataclass(frozen=True)
class Model:
    """Which parts of a params tree are flows: ``flow`` for a bare flow (params = its list), or
    ``parts`` mapping top-level keys of a params dict to their flows (other keys hold plain
    arrays, e.g. a classifier head)."""

    flow: Flow | None = None
    parts: dict[str, Flow] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.flow is None) == (not self.parts):
            raise LipflowError("a Model names either one flow or the params keys that hold flows")


class NumpyOps:
    """The loss's namespace on lipflow's blocks at ``ctx`` (autograd traces through it)."""

    name = "numpy"

    def __init__(self, ctx: Precision | str) -> None:
        self.ctx = precision(ctx) if isinstance(ctx, str) else ctx

    def asarray(self, x: Any) -> Any:
        return self.ctx.cast(x)

    def param(self, p: Any) -> Any:
        return self.ctx.cast(p)

    def const(self, value: float) -> Any:
        return self.ctx.const(value)

    def forward(self, flow: Flow, p: Any, x: Any) -> Any:
        return flow.forward(p, x, ctx=self.ctx)

    def inverse(self, flow: Flow, p: Any, z: Any) -> Any:
        return flow.inverse(p, z, ctx=self.ctx)

    def forward_and_logdet(self, flow: Flow, p: Any, x: Any) -> tuple[Any, Any]:
        return flow.forward_and_logdet(p, x, ctx=self.ctx)

    def sum(self, a: Any, axis: int | None = None) -> Any:
        return self.ctx.sum(a, axis=axis)

    def mean(self, a: Any) -> Any:
        return anp.mean(a)

    def max(self, a: Any, axis: int) -> Any:
        return anp.max(a, axis=axis, keepdims=True)

    def exp(self, a: Any) -> Any:
        return self.ctx.exp(a)

    def log(self, a: Any) -> Any:
        return self.ctx.log(a)

    def dot(self, a: Any, b: Any) -> Any:
        return self.ctx.dot(a, b)


class TorchOps:
    """The same namespace in torch: a flow's params are its exported module."""

    name = "torch"

    def __init__(self, dtype: Any, device: str = "cpu") -> None:
        import torch

        self.torch, self.dtype, self.device = torch, dtype, device

    def asarray(self, x: Any) -> Any:
        return self.torch.as_tensor(onp.asarray(x), dtype=self.dtype, device=self.device)

    def param(self, p: Any) -> Any:
        return p

    def const(self, value: float) -> float:
        return float(value)

    def forward(self, flow: Flow, p: Any, x: Any) -> Any:
        return p(x)

    def inverse(self, flow: Flow, p: Any, z: Any) -> Any:
        return p.inverse(z)

    def forward_and_logdet(self, flow: Flow, p: Any, x: Any) -> tuple[Any, Any]:
        return p.forward_and_logdet(x)

    def sum(self, a: Any, axis: int | None = None) -> Any:
        return self.torch.sum(a) if axis is None else self.torch.sum(a, dim=axis)

    def mean(self, a: Any) -> Any:
        return self.torch.mean(a)

    def max(self, a: Any, axis: int) -> Any:
        return self.torch.amax(a, dim=axis, keepdim=True)

    def exp(self, a: Any) -> Any:
        return self.torch.exp(a)

    def log(self, a: Any) -> Any:
        return self.torch.log(a)

    def dot(self, a: Any, b: Any) -> Any:
        return a @ b


# ---- loss pieces written once against ops ------------------------------------------------------
def nf_nll(ops: Any, z: Any, logdet: Any) -> Any:
    """Mean -log p(x) over the batch (paper Eq. 7, standard normal base) from z = F(x) and
    log|det J_F(x)|, in nats per sample (as :func:`lipflow.train.nf_loss`)."""
    d = z.shape[1]
    logpdf = -ops.const(0.5) * ops.sum(z * z, axis=1) - ops.const(0.5 * d * math.log(2 * math.pi))
    return ops.mean(-(logpdf + logdet))


def fd_penalty(ops: Any, flow: Flow, p: Any, x: Any, noise: tuple[Any, Any], fd: FDRegulariser) -> Any:
    """coeff_f ||F(x) - F(x + eps v)||^2 / eps + coeff_i ||x - F^-1(F(x) + eps v')||^2 / eps,
    batch means (paper Eq. 6; as :class:`lipflow.train.FDRegulariser`); ``noise`` = (v, v')."""
    step = ops.const(fd.eps)
    z = ops.forward(flow, p, x)
    moved = ops.forward(flow, p, x + step * ops.asarray(noise[0]))
    forward = ops.mean(ops.sum((z - moved) ** 2, axis=1)) / step
    back = ops.inverse(flow, p, z + step * ops.asarray(noise[1]))
    inverse = ops.mean(ops.sum((x - back) ** 2, axis=1)) / step
    return fd.coeff_forward * forward + fd.coeff_inverse * inverse


# ---- training loops ----------------------------------------------------------------------------
def numpy_fit(loss: Loss, model: Model, params: Any, sample: Any, *, steps: int, lr: float, seed: int,
              train_precision: str, monitor: Monitor | None = None, monitor_every: int = 0,
              progress: bool = True, description: str = "training") -> TrainResult:
    """:func:`lipflow.train.fit` on ``loss`` with :class:`NumpyOps` at ``train_precision``."""
    ops = NumpyOps(train_precision)

    def objective(p: Any, batch: Any, step: int) -> Any:
        return loss(ops, p, batch, step)

    return fit(objective, params, sample, steps=steps, adam=AdamConfig(lr=lr), seed=seed, monitor=monitor,
               monitor_every=monitor_every, progress=progress, description=description)


def _to_torch_params(model: Model, params: Any, dtype: Any, device: str) -> tuple[Any, list[Any]]:
    """(handles, leaves): flows as modules, other arrays as leaf tensors; all trainable."""
    import torch

    from lipflow.interop.torch import to_torch

    leaves: list[Any] = []

    def tensors(tree: Any) -> Any:
        if isinstance(tree, dict):
            return {key: tensors(value) for key, value in tree.items()}
        if isinstance(tree, (list, tuple)):
            return type(tree)(tensors(item) for item in tree)
        leaf = torch.as_tensor(onp.asarray(tree, dtype=onp.float64)).to(dtype=dtype, device=device)
        leaf.requires_grad_(True)
        leaves.append(leaf)
        return leaf

    if model.flow is not None:
        module = to_torch(model.flow, params, dtype=dtype, device=device)
        return module, list(module.parameters())
    handles = {}
    for key, value in params.items():
        if key in model.parts:
            handles[key] = to_torch(model.parts[key], value, dtype=dtype, device=device)
            leaves += list(handles[key].parameters())
        else:
            handles[key] = tensors(value)
    return handles, leaves


def _to_numpy_params(model: Model, handles: Any) -> Any:
    """float64 master arrays of the handles (the inverse of :func:`_to_torch_params`)."""
    from lipflow.interop.torch import from_torch

    def arrays(tree: Any) -> Any:
        if isinstance(tree, dict):
            return {key: arrays(value) for key, value in tree.items()}
        if isinstance(tree, (list, tuple)):
            return type(tree)(arrays(item) for item in tree)
        return tree.detach().cpu().double().numpy().copy()

    def float64(tree: Any) -> Any:
        if isinstance(tree, dict):
            return {key: float64(value) for key, value in tree.items()}
        if isinstance(tree, (list, tuple)):
            return type(tree)(float64(item) for item in tree)
        return None if tree is None else onp.asarray(tree, dtype=onp.float64)

    if model.flow is not None:
        return float64(from_torch(handles)[1])
    return {key: float64(from_torch(value)[1]) if key in model.parts else arrays(value)
            for key, value in handles.items()}


def torch_dtype(train_precision: str) -> Any:
    """The torch dtype that trains at ``train_precision`` (float32 or float64)."""
    import torch

    dtypes = {"float32": torch.float32, "float64": torch.float64}
    if train_precision not in dtypes:
        raise LipflowError(f"the torch backend trains in float32 or float64, got {train_precision!r}")
    return dtypes[train_precision]


def torch_fit(loss: Loss, model: Model, params: Any, sample: Any, *, steps: int, lr: float, seed: int,
              train_precision: str, device: str = "cpu", monitor: Monitor | None = None, monitor_every: int = 0,
              progress: bool = True, description: str = "training") -> TrainResult:
    """Adam (``torch.optim.Adam``, lipflow's hyper-parameters) on ``loss`` with :class:`TorchOps`.

    Batches come from ``sample(step, rng)`` with ``rng = default_rng(seed)`` as in
    :func:`lipflow.train.fit`; a step whose loss or gradient is not finite is skipped and
    counted; ``monitor(step, params)`` gets float64 master params at the same steps as there.
    """
    import torch
    from tqdm.auto import tqdm

    if not (isinstance(steps, int) and steps >= 0):
        raise LipflowError(f"steps must be a non-negative integer, got {steps!r}")
    dtype = torch_dtype(train_precision)
    torch.manual_seed(seed)
    ops = TorchOps(dtype, device)
    handles, leaves = _to_torch_params(model, params, dtype, device)
    config = AdamConfig(lr=lr)
    optimiser = torch.optim.Adam(leaves, lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps,
                                 foreach=True)
    rng = onp.random.default_rng(seed)
    result = TrainResult(params=params)
    bar = tqdm(range(steps), desc=f"{description} [torch]", disable=not progress, leave=False, mininterval=0.5)
    for step in bar:
        if monitor is not None and monitor_every and step % monitor_every == 0:
            result.records.append({"step": step, **monitor(step, _to_numpy_params(model, handles))})
        batch = sample(step, rng)
        optimiser.zero_grad(set_to_none=True)
        value_tensor = loss(ops, handles, batch, step)
        value = float(value_tensor.detach())
        result.losses.append(value)
        if not math.isfinite(value):
            result.nonfinite_steps += 1
            continue
        value_tensor.backward()
        grads = [leaf.grad.reshape(-1) for leaf in leaves if leaf.grad is not None]
        if grads and not bool(torch.all(torch.isfinite(torch.cat(grads)))):  # one check, one sync
            result.nonfinite_steps += 1
            continue
        optimiser.step()
        if step % 25 == 0:
            bar.set_postfix(loss=f"{value:.4g}")
    result.params = _to_numpy_params(model, handles)
    if monitor is not None and monitor_every:
        result.records.append({"step": steps, **monitor(steps, result.params)})
    return result


def loss_and_gradient(backend_name: str, loss: Loss, model: Model, params: Any, batch: Any, step: int = 0, *,
                      train_precision: str = "float32") -> tuple[float, Any]:
    """(loss, gradient as float64 arrays shaped like ``params``) of one evaluation on a backend:
    the quantity both engines must agree on for identical params and batch."""
    if backend_name == "numpy":
        from autograd import value_and_grad

        ops = NumpyOps(train_precision)
        with onp.errstate(all="ignore"):
            value, grads = value_and_grad(lambda p: loss(ops, p, batch, step))(params)
        return float(value), grads
    import torch

    dtype = torch_dtype(train_precision)
    handles, leaves = _to_torch_params(model, params, dtype, "cpu")
    value = loss(TorchOps(dtype), handles, batch, step)
    value.backward()
    for leaf in leaves:
        leaf.data = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
    return float(value.detach()), _to_numpy_params(model, handles)
