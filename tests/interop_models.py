"""Small third-party flows for the interop tests (2-d, a few hundred parameters each).

``MODELS[library]`` maps a model name to a builder ``(seed) -> model``; each library's builders
import that library inside, so this module imports without any of them. ``train(model, steps)``
fits a model briefly to a two-blob data set by maximum likelihood through lipflow's adapter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

INSTALL_HINT = "needs the interop extra: pip install 'lipflow[interop]'"


def data(n: int = 128, seed: int = 0) -> torch.Tensor:
    """Two Gaussian blobs with a curved offset, float32, shape (n, 2)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(n, 2, generator=g)
    side = (torch.arange(n) % 2).float() * 2 - 1
    return torch.stack([t[:, 0] * 0.5 + 1.5 * side, t[:, 1] * 0.3 + 0.5 * (t[:, 0] ** 2) * side], dim=1)


def _mlp(i: int, o: int, hidden: int = 16) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(i, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, o))


class _ContextFree(torch.nn.Module):
    """An MLP called as net(x, context) (nflows' coupling conditioners)."""

    def __init__(self, i: int, o: int) -> None:
        super().__init__()
        self.net = _mlp(i, o)

    def forward(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        return self.net(x)


def zuko_maf(seed: int) -> Any:
    import zuko

    torch.manual_seed(seed)
    return zuko.flows.MAF(features=2, transforms=2, hidden_features=(16, 16))


def zuko_nsf(seed: int) -> Any:
    import zuko

    torch.manual_seed(seed)
    return zuko.flows.NSF(features=2, transforms=2, bins=4, hidden_features=(16, 16))


def nflows_maf(seed: int) -> Any:
    from nflows import distributions, flows, transforms

    torch.manual_seed(seed)
    layers = []
    for _ in range(2):
        layers += [transforms.MaskedAffineAutoregressiveTransform(features=2, hidden_features=16),
                   transforms.ReversePermutation(features=2)]
    return flows.Flow(transforms.CompositeTransform(layers), distributions.StandardNormal([2]))


def nflows_realnvp(seed: int) -> Any:
    from nflows import distributions, flows, transforms

    torch.manual_seed(seed)
    layers: list[Any] = [transforms.ActNorm(2)]
    for k in range(2):
        mask = torch.tensor([1, 0] if k % 2 == 0 else [0, 1])
        layers += [transforms.AffineCouplingTransform(mask, _ContextFree)]
    return flows.Flow(transforms.CompositeTransform(layers), distributions.StandardNormal([2]))


def normflows_realnvp(seed: int) -> Any:
    import normflows as nf

    torch.manual_seed(seed)
    layers: list[Any] = []
    for _ in range(2):
        layers += [nf.flows.AffineCouplingBlock(nf.nets.MLP([1, 16, 2], init_zeros=False)),
                   nf.flows.Permute(2, mode="swap"), nf.flows.ActNorm(2)]
    return nf.NormalizingFlow(nf.distributions.DiagGaussian(2, trainable=False), layers)


def normflows_residual(seed: int) -> Any:
    """A residual flow: its sampling direction (lipflow's inverse) is a fixed-point iteration
    that stops at tolerance 1e-5 (normflows' default)."""
    import normflows as nf

    torch.manual_seed(seed)
    layers = [nf.flows.Residual(nf.nets.LipschitzMLP([2, 16, 16, 2], init_zeros=False, lipschitz_const=0.9),
                                reduce_memory=True, exact_trace=True) for _ in range(2)]
    return nf.NormalizingFlow(nf.distributions.DiagGaussian(2, trainable=False), layers)


def freia_allinone(seed: int) -> Any:
    """AllInOneBlock with a soft (float32-rounded orthogonal) permutation inverted by its transpose."""
    import FrEIA.framework as ff
    import FrEIA.modules as fm
    import numpy as np

    torch.manual_seed(seed)
    np.random.seed(seed)
    inn = ff.SequenceINN(2)
    for _ in range(2):
        inn.append(fm.AllInOneBlock, subnet_constructor=_mlp, permute_soft=True)
    return inn


def freia_glow(seed: int) -> Any:
    import FrEIA.framework as ff
    import FrEIA.modules as fm

    torch.manual_seed(seed)
    nodes = [ff.InputNode(2, name="in")]
    for k in range(2):
        nodes.append(ff.Node(nodes[-1], fm.GLOWCouplingBlock, {"subnet_constructor": _mlp, "clamp": 2.0}))
        nodes.append(ff.Node(nodes[-1], fm.PermuteRandom, {"seed": seed + k}))
    nodes.append(ff.Node(nodes[-1], fm.ActNorm, {}))
    nodes.append(ff.OutputNode(nodes[-1], name="out"))
    return ff.GraphINN(nodes)


def lipflow_affine(seed: int) -> Any:
    import lipflow as lf
    from lipflow.interop.torch import to_torch

    flow = lf.Flow([lf.AffineCoupling(2), lf.Reverse(2), lf.AffineCoupling(2)])
    return to_torch(flow, flow.init(seed=seed), dtype=torch.float32)


MODELS: dict[str, dict[str, Callable[[int], Any]]] = {
    "zuko": {"maf": zuko_maf, "nsf": zuko_nsf},
    "nflows": {"maf": nflows_maf, "realnvp": nflows_realnvp},
    "normflows": {"realnvp": normflows_realnvp, "residual": normflows_residual},
    "FrEIA": {"allinone": freia_allinone, "glow": freia_glow},
}


def train(model: Any, steps: int = 30, lr: float = 3e-3, seed: int = 0) -> Any:
    """A few Adam steps of maximum likelihood (standard normal latent) on :func:`data`; returns the model."""
    from lipflow.interop.adapters import adapt

    flow = adapt(model)
    parameters = [p for p in flow.module.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(parameters, lr=lr)
    x = data(256, seed)
    for _ in range(steps):
        z, logdet = flow.forward_and_logdet(x)
        loss = (0.5 * (z**2).sum(dim=1) - logdet).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model


Map = Callable[[torch.Tensor], torch.Tensor]


def native(library: str, model: Any) -> tuple[Map, Map]:
    """(data -> latent, latent -> data) written directly against each library's own API, for
    checks that do not go through lipflow's adapters."""
    if library == "zuko":
        return (lambda x: model().transform(x)), (lambda z: model().transform.inv(z))
    if library == "nflows":
        return (lambda x: model._transform(x)[0]), (lambda z: model._transform.inverse(z)[0])
    if library == "normflows":
        return model.inverse, model.forward
    if library == "FrEIA":
        return (lambda x: model(x)[0]), (lambda z: model(z, rev=True)[0])
    raise KeyError(library)
