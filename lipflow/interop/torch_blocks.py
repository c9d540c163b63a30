"""lipflow blocks as ``torch.nn.Module`` s with the same numerics (forward, inverse, logdet).

Each module mirrors one lipflow block operation by operation, so float64 results agree with
the NumPy path to rounding (the export test checks <= 1e-12). A module keeps its lipflow block
as ``spec`` (the architecture; immutable) and holds the parameters as ``nn.Parameter`` s in
lipflow's layout (MLP weights are (in, out): ``h @ W + b``). Inputs are batches (n, dim).

Stable formulas are kept where torch's own differ: softplus here is
max(x, 0) + log1p(exp(-|x|)) everywhere (``torch.nn.functional.softplus`` switches to x above
a threshold, which differs by ~2e-9 at x = 20).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as onp

from lipflow.blocks.base import Block
from lipflow.blocks.conditioners import MLP, Constant
from lipflow.blocks.coupling import AdditiveCoupling, AffineCoupling
from lipflow.blocks.linear import ActNorm, InvertibleLinear, Permutation
from lipflow.blocks.scales import Bounded, Exp, Identity, Scale, Sigmoid, SoftClamp
from lipflow.errors import LipflowError
from lipflow.interop import require_torch
from lipflow.precision.elementwise import LIPSWISH_BETA, LIPSWISH_SCALE

require_torch()
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

__all__ = [
    "DERIVATIVES",
    "InvertibleModule",
    "TorchActNorm",
    "TorchAdditiveCoupling",
    "TorchAffineCoupling",
    "TorchFlow",
    "TorchInvertibleLinear",
    "TorchPermutation",
    "as_parameter",
    "to_numpy",
    "torch_activation",
    "torch_scale",
]


# ---- elementwise pieces ---------------------------------------------------------------------
def _softplus(x: Tensor) -> Tensor:
    return torch.clamp_min(x, 0) + torch.log1p(torch.exp(-torch.abs(x)))


def _lipswish(z: Tensor) -> Tensor:
    return z * torch.sigmoid(LIPSWISH_BETA * z) / LIPSWISH_SCALE


def _lipswish_derivative(z: Tensor) -> Tensor:
    s = torch.sigmoid(LIPSWISH_BETA * z)
    return (s + LIPSWISH_BETA * z * s * (1 - s)) / LIPSWISH_SCALE


def _elu_derivative(z: Tensor) -> Tensor:
    positive = (z > 0).to(z.dtype)
    return positive + torch.exp(z * (1 - positive)) * (1 - positive)


def _tanh_derivative(z: Tensor) -> Tensor:
    t = torch.tanh(z)
    return 1 - t * t


_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "elu": nn.functional.elu,
    "lipswish": _lipswish,
    "swish": lambda z: z * torch.sigmoid(z),
    "sigmoid": torch.sigmoid,
    "softplus": _softplus,
    "identity": lambda z: z,
}

#: derivatives of the activations residual blocks allow (for their Jacobian's chain rule)
DERIVATIVES: dict[str, Callable[[Tensor], Tensor]] = {
    "lipswish": _lipswish_derivative,
    "elu": _elu_derivative,
    "tanh": _tanh_derivative,
}


def torch_activation(name: str) -> Callable[[Tensor], Tensor]:
    """The torch version of lipflow's activation ``name``."""
    if name not in _ACTIVATIONS:
        raise LipflowError(f"unknown activation {name!r}; valid activations are {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def torch_scale(scale: Scale) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """(g, log g) of a lipflow scale function, as torch functions (same formulas)."""
    if isinstance(scale, Sigmoid):

        def g(s: Tensor) -> Tensor:
            value = torch.sigmoid(s + scale.shift)
            return value + scale.bias if scale.bias else value

        def log_g(s: Tensor) -> Tensor:
            return torch.log(g(s)) if scale.bias else nn.functional.logsigmoid(s + scale.shift)

        return g, log_g
    if isinstance(scale, Bounded):

        def g_bounded(s: Tensor) -> Tensor:
            return scale.low + (scale.high - scale.low) * torch.sigmoid(s + scale.shift)

        return g_bounded, lambda s: torch.log(g_bounded(s))
    if isinstance(scale, Exp):
        return torch.exp, lambda s: s
    if isinstance(scale, SoftClamp):

        def log_g_clamped(s: Tensor) -> Tensor:
            return scale.clamp * (2 / math.pi) * torch.atan(s / scale.clamp)

        return lambda s: torch.exp(log_g_clamped(s)), log_g_clamped
    if isinstance(scale, Identity):
        return lambda s: s, torch.log
    raise LipflowError(f"the torch bridge has no translation of the scale {scale!r}")


def as_parameter(value: Any, dtype: torch.dtype) -> nn.Parameter:
    """A float64 master array as a parameter of the working dtype."""
    return nn.Parameter(torch.as_tensor(onp.asarray(value, dtype=onp.float64)).to(dtype))


def to_numpy(tensor: Tensor) -> onp.ndarray:
    """A tensor as a float64 NumPy array on the host (a copy, detached)."""
    return tensor.detach().to("cpu", torch.float64).numpy().copy()


# ---- base -----------------------------------------------------------------------------------
class InvertibleModule(nn.Module):
    """An invertible map on batches (n, dim): ``forward``, ``inverse``, ``logdet``."""

    spec: Block

    def __init__(self, spec: Block) -> None:
        super().__init__()
        self.spec = spec
        self.dim = spec.dim

    def check_input(self, x: Tensor, who: str) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise LipflowError(
                f"{type(self).__name__}.{who}: input must be a tensor of shape (n, {self.dim}), got {shape}"
            )

    def inverse(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def logdet(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_and_logdet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self(x), self.logdet(x)

    def export_params(self) -> Any:
        """The parameters as lipflow float64 master arrays (nested dicts / lists)."""
        raise NotImplementedError

    def _zeros(self, x: Tensor) -> Tensor:
        return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)


class _Conditioner(nn.Module):
    """A lipflow MLP or Constant conditioner."""

    def __init__(self, spec: MLP | Constant, params: dict, out_dim: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.spec, self.out_dim = spec, out_dim
        if isinstance(spec, MLP):
            self.weights = nn.ParameterList([as_parameter(w, dtype) for w in params["weights"]])
            self.biases = nn.ParameterList([as_parameter(b, dtype) for b in params["biases"]])
            self.phi = torch_activation(spec.activation)
        else:
            self.register_buffer("value", torch.as_tensor(spec.values(out_dim)).to(dtype))

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.spec, Constant):
            return self.value.expand(x.shape[0], self.out_dim).clone()
        h, last = x, len(self.weights) - 1
        for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w + b
            if layer < last:
                h = self.phi(h)
        return h

    def export_params(self) -> dict:
        if isinstance(self.spec, Constant):
            return {}
        return {"weights": [to_numpy(w) for w in self.weights], "biases": [to_numpy(b) for b in self.biases]}


class _TorchCoupling(InvertibleModule):
    """Shared splitting, merging and the fused recomputation of coupling blocks."""

    def __init__(self, spec: AdditiveCoupling | AffineCoupling) -> None:
        super().__init__(spec)
        first, second = spec.indices
        self.register_buffer("first", torch.tensor(first, dtype=torch.long))
        self.register_buffer("second", torch.tensor(second, dtype=torch.long))
        order = onp.argsort(onp.concatenate([first, second]))
        self.register_buffer("order", torch.as_tensor(order, dtype=torch.long))

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x[:, self.first], x[:, self.second]

    def merge(self, x1: Tensor, x2: Tensor) -> Tensor:
        return torch.cat([x1, x2], dim=1)[:, self.order]

    def coefficients(self, x1: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(t(x1), g(s(x1)), log g(s(x1))); g and log g are None for additive blocks."""
        raise NotImplementedError

    def couple(self, x2: Tensor, t: Tensor, g: Tensor | None) -> Tensor:
        raise NotImplementedError

    def uncouple(self, y2: Tensor, t: Tensor, g: Tensor | None) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_and_logdet(x)[0]

    def forward_and_logdet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self.check_input(x, "forward")
        x1, x2 = self.split(x)
        t, g, log_g = self.coefficients(x1)
        logdet = self._zeros(x) if log_g is None else torch.sum(log_g, dim=1)
        return self.merge(x1, self.couple(x2, t, g)), logdet

    def inverse(self, y: Tensor) -> Tensor:
        self.check_input(y, "inverse")
        y1, y2 = self.split(y)
        t, g, _ = self.coefficients(y1)
        return self.merge(y1, self.uncouple(y2, t, g))

    def logdet(self, x: Tensor) -> Tensor:
        return self.forward_and_logdet(x)[1]

    def recompute(self, y: Tensor) -> tuple[list[Tensor], Callable[..., Tensor], Tensor, Tensor]:
        """For memory-saving backprop: invert y and rebuild the forward graph in one pass.

        The conditioner runs once on x1 = y1 (copied exactly), with gradient tracking; x2 is
        recovered from detached coefficients. Returns (leaves [x1, x2], merge, F(x), logdet).
        """
        y1, y2 = self.split(y.detach())
        x1 = y1.requires_grad_(True)
        t, g, log_g = self.coefficients(x1)
        with torch.no_grad():
            x2 = self.uncouple(y2, t, g)
        x2.requires_grad_(True)
        logdet = self._zeros(y) if log_g is None else torch.sum(log_g, dim=1)
        return [x1, x2], self.merge, self.merge(x1, self.couple(x2, t, g)), logdet


class TorchAdditiveCoupling(_TorchCoupling):
    """y1 = x1, y2 = x2 + t(x1) (paper Eq. 3)."""

    def __init__(self, spec: AdditiveCoupling, params: dict, dtype: torch.dtype = torch.float64) -> None:
        super().__init__(spec)
        self.t = _Conditioner(spec.t, params["t"], spec.n_transformed, dtype)

    def coefficients(self, x1: Tensor) -> tuple[Tensor, None, None]:
        return self.t(x1), None, None

    def couple(self, x2: Tensor, t: Tensor, g: Tensor | None) -> Tensor:
        return x2 + t

    def uncouple(self, y2: Tensor, t: Tensor, g: Tensor | None) -> Tensor:
        return y2 - t

    def export_params(self) -> dict:
        return {"t": self.t.export_params()}


class TorchAffineCoupling(_TorchCoupling):
    """y2 = x2 g(s(x1)) + t(x1) (realnvp) or (x2 + t(x1)) g(s(x1)) (glow) (paper Eq. 4)."""

    def __init__(self, spec: AffineCoupling, params: dict, dtype: torch.dtype = torch.float64) -> None:
        super().__init__(spec)
        self.t = _Conditioner(spec.t, params["t"], spec.n_transformed, dtype)
        self.s = _Conditioner(spec.s, params["s"], spec.n_transformed, dtype)
        self.g, self.log_g = torch_scale(spec.scale)
        self.glow_form = spec.form == "glow"

    def coefficients(self, x1: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        s = self.s(x1)
        return self.t(x1), self.g(s), self.log_g(s)

    def couple(self, x2: Tensor, t: Tensor, g: Tensor | None) -> Tensor:
        return (x2 + t) * g if self.glow_form else x2 * g + t

    def uncouple(self, y2: Tensor, t: Tensor, g: Tensor | None) -> Tensor:
        return y2 / g - t if self.glow_form else (y2 - t) / g

    def export_params(self) -> dict:
        return {"t": self.t.export_params(), "s": self.s.export_params()}


class TorchPermutation(InvertibleModule):
    """y = x[:, perm]."""

    def __init__(self, spec: Permutation, params: dict | None = None, dtype: torch.dtype = torch.float64) -> None:
        super().__init__(spec)
        self.register_buffer("perm", torch.tensor(spec.perm, dtype=torch.long))
        self.register_buffer("inverse_perm", torch.as_tensor(onp.argsort(spec.perm), dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x, "forward")
        return x[:, self.perm]

    def inverse(self, y: Tensor) -> Tensor:
        self.check_input(y, "inverse")
        return y[:, self.inverse_perm]

    def logdet(self, x: Tensor) -> Tensor:
        return self._zeros(x)

    def export_params(self) -> dict:
        return {}


class TorchInvertibleLinear(InvertibleModule):
    """y = W x, W = P L (U + diag(sign exp(log_scale))) (Glow's LU-parametrised 1x1 conv)."""

    def __init__(self, spec: InvertibleLinear, params: dict, dtype: torch.dtype = torch.float64) -> None:
        super().__init__(spec)
        self.lower = as_parameter(params["lower"], dtype)
        self.upper = as_parameter(params["upper"], dtype)
        self.log_scale = as_parameter(params["log_scale"], dtype)
        d = spec.dim
        self.register_buffer("perm", torch.tensor(spec.perm, dtype=torch.long))
        self.register_buffer("inverse_perm", torch.as_tensor(onp.argsort(spec.perm), dtype=torch.long))
        self.register_buffer("signs", torch.as_tensor(spec.signs).to(dtype))
        self.register_buffer("strictly_lower", torch.tril(torch.ones(d, d, dtype=dtype), -1))
        self.register_buffer("strictly_upper", torch.triu(torch.ones(d, d, dtype=dtype), 1))
        self.register_buffer("eye", torch.eye(d, dtype=dtype))

    def triangles(self) -> tuple[Tensor, Tensor]:
        lower = self.lower * self.strictly_lower + self.eye
        upper = self.upper * self.strictly_upper + self.eye * (self.signs * torch.exp(self.log_scale))
        return lower, upper

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x, "forward")
        lower, upper = self.triangles()
        return ((x @ upper.T) @ lower.T)[:, self.perm]

    def inverse(self, y: Tensor) -> Tensor:
        self.check_input(y, "inverse")
        lower, upper = self.triangles()
        rhs = y[:, self.inverse_perm].T
        solved = torch.linalg.solve_triangular(lower, rhs, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper, solved, upper=True).T

    def logdet(self, x: Tensor) -> Tensor:
        return self._zeros(x) + torch.sum(self.log_scale)

    def export_params(self) -> dict:
        return {"lower": to_numpy(self.lower), "upper": to_numpy(self.upper), "log_scale": to_numpy(self.log_scale)}


class TorchActNorm(InvertibleModule):
    """y = (x + bias) exp(log_scale) per coordinate."""

    def __init__(self, spec: ActNorm, params: dict, dtype: torch.dtype = torch.float64) -> None:
        super().__init__(spec)
        self.log_scale = as_parameter(params["log_scale"], dtype)
        self.bias = as_parameter(params["bias"], dtype)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x, "forward")
        return (x + self.bias) * torch.exp(self.log_scale)

    def inverse(self, y: Tensor) -> Tensor:
        self.check_input(y, "inverse")
        return y * torch.exp(-self.log_scale) - self.bias

    def logdet(self, x: Tensor) -> Tensor:
        return self._zeros(x) + torch.sum(self.log_scale)

    def export_params(self) -> dict:
        return {"log_scale": to_numpy(self.log_scale), "bias": to_numpy(self.bias)}


class TorchFlow(InvertibleModule):
    """F = F_L o ... o F_1; ``blocks`` is an ``nn.ModuleList`` of invertible modules."""

    def __init__(self, spec: Block, blocks: Sequence[InvertibleModule]) -> None:
        super().__init__(spec)
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def inverse(self, y: Tensor) -> Tensor:
        for block in reversed(self.blocks):
            y = block.inverse(y)
        return y

    def forward_and_logdet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        total = self._zeros(x)
        for block in self.blocks:
            x, logdet = block.forward_and_logdet(x)
            total = total + logdet
        return x, total

    def logdet(self, x: Tensor) -> Tensor:
        return self.forward_and_logdet(x)[1]

    def forward_trace(self, x: Tensor) -> list[Tensor]:
        """[x_0 = x, x_1, ..., x_L = F(x)]."""
        trace = [x]
        for block in self.blocks:
            trace.append(block(trace[-1]))
        return trace

    def inverse_trace(self, z: Tensor) -> list[Tensor]:
        """[z_L = z, z_{L-1}, ..., z_0 = F^-1(z)]."""
        trace = [z]
        for block in reversed(self.blocks):
            trace.append(block.inverse(trace[-1]))
        return trace

    def export_params(self) -> list:
        return [block.export_params() for block in self.blocks]
