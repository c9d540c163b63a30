"""Training backends for the experiments: one experiment definition, two engines.

An experiment defines its data (a sampler), its model (a lipflow :class:`~lipflow.blocks.Flow`
and initial params) and its loss (the NF loss, paper Eq. 7); a backend supplies only the blocks'
numerics, autodiff and Adam, and hands back float64 master params. Evaluation (reconstruction
errors at the requested precision, float64 references) always runs on lipflow's own blocks, so
both backends write the same outputs, CSV columns and figures. Experiments with other losses
(the classifier's cross-entropy, the regression's MSE, with FD/NF terms) write them once against
an array namespace and train with ``backend.fit`` (:mod:`lipflow.experiments.engines`).

- ``numpy``: HIPS autograd on lipflow's blocks (:func:`lipflow.train.fit`), any precision.
- ``torch``: the flow exported by :func:`lipflow.interop.torch.to_torch` (same numerics to
  rounding), ``torch.optim.Adam`` with the same hyper-parameters, on CPU or CUDA. Torch is
  imported only when this backend is chosen; without it a :class:`BackendUnavailableError` names the
  install command.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as onp

from lipflow.blocks import Flow
from lipflow.errors import LipflowError
from lipflow.train import AdamConfig, TrainResult, fit, nf_loss

__all__ = [
    "BACKENDS",
    "SMALL_RUN",
    "Backend",
    "BackendUnavailableError",
    "NumpyBackend",
    "TorchBackend",
    "add_backend_arguments",
    "backend_for_run",
    "backend_from_args",
    "fallback_note",
    "get_backend",
    "torch_installed",
]

BACKENDS = ("numpy", "torch")
TORCH_HINT = "pip install 'lipflow[torch]' (or pip install torch)"

Sampler = Callable[[int, onp.random.Generator], onp.ndarray]
"""sample(step, rng) -> a training batch (n, d) as a float64 array."""
NumpyObjective = Callable[[Any, Any, int], Any]


class BackendUnavailableError(LipflowError):
    """The chosen backend cannot run here (e.g. torch not installed, no CUDA device)."""


@dataclass(frozen=True)
class NumpyBackend:
    """HIPS autograd on lipflow's blocks at ``train_precision``."""

    name: str = "numpy"
    device: str = "cpu"

    def fit_nf(
        self, flow: Flow, params: Any, sample: Sampler, *, steps: int, lr: float, seed: int,
        train_precision: str = "float32", progress: bool = True, description: str = "training",
        objective: NumpyObjective | None = None,
    ) -> TrainResult:
        """Adam on the NF loss (or ``objective(params, batch, step)`` when given, for a loss
        only the NumPy path defines, such as a stochastic log-det estimate)."""
        def nf(p: Any, batch: Any, step: int) -> Any:
            return nf_loss(flow, p, batch, ctx=train_precision)

        return fit(objective or nf, params, sample, steps=steps, adam=AdamConfig(lr=lr), seed=seed,
                   progress=progress, description=description)

    def fit(self, loss: Any, model: Any, params: Any, sample: Sampler, *, steps: int, lr: float, seed: int,
            train_precision: str = "float32", monitor: Any = None, monitor_every: int = 0, progress: bool = True,
            description: str = "training") -> TrainResult:
        """Adam on ``loss(ops, params, batch, step)``, a loss written once against
        :class:`lipflow.experiments.engines.NumpyOps`/``TorchOps`` (see that module)."""
        from lipflow.experiments.engines import numpy_fit

        return numpy_fit(loss, model, params, sample, steps=steps, lr=lr, seed=seed, train_precision=train_precision,
                         monitor=monitor, monitor_every=monitor_every, progress=progress, description=description)


@dataclass(frozen=True)
class TorchBackend:
    """The flow as a torch module (``to_torch``), ``torch.optim.Adam``, on ``device``."""

    name: str = "torch"
    device: str = "cpu"

    def fit_nf(
        self, flow: Flow, params: Any, sample: Sampler, *, steps: int, lr: float, seed: int,
        train_precision: str = "float32", progress: bool = True, description: str = "training",
        objective: NumpyObjective | None = None,
    ) -> TrainResult:
        """Adam on the exact NF loss -mean(log N(F(x)) + log|det J_F(x)|) in torch.

        Batches come from the same sampler and seed as the NumPy path; a step whose loss or
        gradient is not finite is skipped and counted, as in :func:`lipflow.train.fit`.
        ``objective`` (a NumPy-only loss) is ignored: residual blocks use their exact log-det.
        """
        torch = _import_torch()
        from tqdm.auto import tqdm

        from lipflow.interop.torch import from_torch, to_torch

        dtypes = {"float32": torch.float32, "float64": torch.float64}
        if train_precision not in dtypes:
            raise LipflowError(f"the torch backend trains in float32 or float64, got {train_precision!r}")
        dtype = dtypes[train_precision]
        torch.manual_seed(seed)
        module = to_torch(flow, params, dtype=dtype, device=self.device)
        config = AdamConfig(lr=lr)
        optimiser = torch.optim.Adam(module.parameters(), lr=config.lr, betas=(config.beta1, config.beta2),
                                     eps=config.eps)
        rng = onp.random.default_rng(seed)
        result = TrainResult(params=params)
        half_log_two_pi = 0.5 * math.log(2 * math.pi)
        bar = tqdm(range(steps), desc=f"{description} [torch]", disable=not progress, leave=False, mininterval=0.5)
        for step in bar:
            batch = torch.as_tensor(onp.asarray(sample(step, rng)), dtype=dtype, device=self.device)
            optimiser.zero_grad(set_to_none=True)
            z, logdet = module.forward_and_logdet(batch)
            loss = torch.mean(0.5 * torch.sum(z * z, dim=1) + z.shape[1] * half_log_two_pi - logdet)
            value = float(loss.detach())
            result.losses.append(value)
            if not math.isfinite(value):
                result.nonfinite_steps += 1
                continue
            loss.backward()
            grads = [p.grad for p in module.parameters() if p.grad is not None]
            if not all(bool(torch.all(torch.isfinite(g))) for g in grads):
                result.nonfinite_steps += 1
                continue
            optimiser.step()
            if step % 25 == 0:
                bar.set_postfix(loss=f"{value:.4g}")
        _, trained = from_torch(module)
        result.params = _as_float64(trained)
        return result

    def fit(self, loss: Any, model: Any, params: Any, sample: Sampler, *, steps: int, lr: float, seed: int,
            train_precision: str = "float32", monitor: Any = None, monitor_every: int = 0, progress: bool = True,
            description: str = "training") -> TrainResult:
        """Adam on ``loss(ops, params, batch, step)`` in torch on this device (see
        :func:`lipflow.experiments.engines.torch_fit`)."""
        from lipflow.experiments.engines import torch_fit

        return torch_fit(loss, model, params, sample, steps=steps, lr=lr, seed=seed, train_precision=train_precision,
                         device=self.device, monitor=monitor, monitor_every=monitor_every, progress=progress,
                         description=description)


Backend = NumpyBackend | TorchBackend


def _as_float64(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {key: _as_float64(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_as_float64(item) for item in tree)
    if tree is None:
        return None
    return onp.asarray(tree, dtype=onp.float64)


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as error:
        raise BackendUnavailableError(f"--backend torch needs PyTorch, which is not installed ({error}); "
                                 f"install it with {TORCH_HINT}") from None
    return torch


def torch_installed() -> bool:
    """Whether PyTorch can be imported here (without importing it)."""
    import importlib.util

    if "torch" in sys.modules:
        return sys.modules["torch"] is not None  # None: imports of torch are blocked
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def get_backend(name: str = "numpy", device: str = "cpu") -> Backend:
    """The backend called ``name`` ("numpy", "torch", or "auto": torch when it is installed,
    else numpy) on ``device`` ("cpu", "cuda", "cuda:1")."""
    if name == "auto":
        name = "torch" if torch_installed() else "numpy"
    if name == "numpy":
        if device != "cpu":
            raise LipflowError(f"the numpy backend runs on the CPU only; use --backend torch for --device {device}")
        return NumpyBackend()
    if name == "torch":
        torch = _import_torch()
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError(f"--device {device} needs a CUDA GPU and a CUDA build of torch; none is "
                                     "available here (use --device cpu)")
        if not (device == "cpu" or device.startswith("cuda")):
            raise LipflowError(f"unknown device {device!r}; use cpu, cuda or cuda:N")
        return TorchBackend(device=device)
    raise LipflowError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)} or auto")


#: block-steps (blocks x Adam steps) up to which a run takes seconds: ``--backend auto`` trains it
#: on NumPy in one process (torch's per-operation overhead and a worker's start-up cost more than
#: they save)
SMALL_RUN = 10_000


def fallback_note(requested: str, backend: Backend, small: bool, numpy_cost: str) -> str | None:
    """What to tell a user whose ``--backend auto`` fell back to NumPy for a run that is not
    ``small`` (None when there is nothing to say); ``numpy_cost`` says what NumPy will cost."""
    if requested != "auto" or backend.name != "numpy" or small:
        return None
    return (f"note: torch is not installed, so training runs on NumPy: {numpy_cost}; "
            f"pip install 'lipflow[torch]' to train on torch")


def backend_for_run(args: argparse.Namespace, small: bool, numpy_cost: str) -> Backend:
    """The backend of ``--backend``/``--device`` for a run of this size: ``auto`` is NumPy for
    a ``small`` run on the CPU, else torch when installed (NumPy with a note on stderr when not)."""
    if getattr(args, "backend", "numpy") == "auto" and small and getattr(args, "device", "cpu") == "cpu":
        return get_backend("numpy")
    backend = backend_from_args(args)
    note = fallback_note(getattr(args, "backend", "numpy"), backend, small, numpy_cost)
    if note:
        print(note, file=sys.stderr)
    return backend


def add_backend_arguments(parser: argparse.ArgumentParser, default: str = "numpy",
                          auto: str = "torch when installed, else numpy") -> None:
    """--backend numpy|torch|auto and --device, for experiments whose training runs on either;
    ``auto`` says in words how the experiment resolves ``--backend auto``."""
    parser.add_argument("--backend", choices=(*BACKENDS, "auto"), default=default,
                        help=f"training engine: numpy (autograd), torch (needs the torch extra) or auto ({auto}); "
                             f"default {default}")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda or cuda:N")


def backend_from_args(args: argparse.Namespace) -> Backend:
    """The backend of ``--backend``/``--device`` (numpy on CPU when the flags are absent)."""
    return get_backend(getattr(args, "backend", "numpy"), getattr(args, "device", "cpu"))


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (budgets are judged by CPU time)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wall_seconds() -> float:
    return time.perf_counter()
