"""Glow-like invertible layers on image batches (n, c, h, w), for GPU-scale experiments.

The paper's CIFAR-10 classifiers (Section 4.2, Table 2) stack steps of ActNorm, a 1x1
convolution (or a fixed channel shuffle) and an additive or affine coupling with a small CNN
conditioner, after space-to-depth squeezes. These modules follow lipflow's invertible-module
interface (``forward``, ``inverse``, ``forward_and_logdet``), so the torch diagnostics,
regularisers and memory-saving backprop apply to them unchanged. Scale functions are lipflow's
(:mod:`lipflow.blocks.scales`), with the same formulas as the vector blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as onp

from lipflow.blocks.scales import Scale, as_scale
from lipflow.errors import LipflowError
from lipflow.interop import require_torch

require_torch()
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from lipflow.interop.torch_blocks import torch_scale  # noqa: E402

__all__ = [
    "ChannelActNorm",
    "ChannelShuffle",
    "ConvCoupling",
    "GlowFlow",
    "InvConv1x1",
    "Squeeze",
    "glow_flow",
]


def _check_image(x: Tensor, channels: int, who: str) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        raise LipflowError(f"{who}: expected images (n, {channels}, h, w), got shape {tuple(x.shape)}")


class Squeeze(nn.Module):
    """Space-to-depth: (n, c, h, w) -> (n, 4c, h/2, w/2); volume-preserving (log det 0)."""

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        if h % 2 or w % 2:
            raise LipflowError(f"Squeeze needs even height and width, got {h}x{w}; use fewer levels")
        x = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(n, 4 * c, h // 2, w // 2)

    def inverse(self, y: Tensor) -> Tensor:
        n, c4, h, w = y.shape
        y = y.reshape(n, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return y.reshape(n, c4 // 4, 2 * h, 2 * w)

    def forward_and_logdet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self(x), torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)


class ChannelActNorm(nn.Module):
    """y = (x + bias_c) exp(log_scale_c) per channel; log det = h w sum(log_scale)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    @torch.no_grad()
    def data_init(self, x: Tensor) -> None:
        """Glow's data-dependent initialisation: zero mean, unit variance per channel on ``x``."""
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + 1e-6))

    def forward(self, x: Tensor) -> Tensor:
        return (x + self.bias) * torch.exp(self.log_scale)

    def inverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self.log_scale) - self.bias

    def forward_and_logdet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _check_image(x, self.channels, "ChannelActNorm")
        logdet = x.shape[2] * x.shape[3] * torch.sum(self.log_scale)
        return self(x), logdet.expand(x.shape[0])


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution W = P L (U + diag(sign exp(log_scale))), random orthogonal start."""

    def __init__(self, channels: int, seed: int = 0) -> None:
        super().__init__()
        import scipy.linalg

        rng = onp.random.default_rng(seed)
        q, _ = onp.linalg.qr(rng.standard_normal((channels, channels)))
        p, lower, upper = scipy.linalg.lu(q)
        diagonal = onp.diag(upper)
        self.channels = channels
        self.register_buffer("p", torch.as_tensor(p, dtype=torch.float32))
        self.register_buffer("signs", torch.as_tensor(onp.sign(diagonal), dtype=torch.float32))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(torch.as_tensor(onp.tril(lower, -1), dtype=torch.float32))
        self.upper = nn.Parameter(torch.as_tensor(onp.triu(upper, 1), dtype=torch.float32))
        self.log_scale = nn.Parameter(torch.as_tensor(onp.log(onp.abs(diagonal)), dtype=torch.float32))

    def factors(self) -> tuple[Tensor, Tensor]:
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.signs * torch.exp(self.log_scale))
        return lower, upper

    def weight(self) -> Tensor:
        lower, upper = self.factors()
        return self.p @ lower @ upper

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("ij,njhw->nihw", self.weight(), x)

    def inverse(self, y: Tensor) -> Tensor:
        lower, upper = self.factors()
        n, c, h, w = y.shape
        rhs = self.p.T @ y.permute(1, 0, 2, 3).reshape(c, -1)
        solved = torch.linalg.solve_triangular(lower, rhs, upper=False, unitriangular=True)
        solved = torch.linalg.solve_triangular(upper, solved, upper=True)
        return solved.reshape(c, n, h, w).permute(1, 0, 2, 3)

    def forward_and_logdet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _check_image(x, self.channels, "InvConv1x1")
        logdet = x.shape[2] * x.shape[3] * torch.sum(self.log_scale)
        return self(x), logdet.expand(x.shape[0])


class ChannelShuffle(nn.Module):
    """A fixed random permutation of the channels (the paper's "shuffle")."""

    def __init__(self, channels: int, seed: int = 0) -> None:
        super().__init__()
        perm = onp.random.default_rng(seed).permutation(channels)
        self.register_buffer("perm", torch.as_tensor(perm, dtype=torch.long))
        self.register_buffer("inverse_perm", torch.as_tensor(onp.argsort(perm), dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        return x[:, self.perm]

    def inverse(self, y: Tensor) -> Tensor:
        return y[:, self.inverse_perm]

    def forward_and_logdet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self(x), torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)


class ConvCoupling(nn.Module):
    """Coupling on channel halves with a conv conditioner 3x3 -> 1x1 -> 3x3 (last layer zero:
    the block starts as the identity, as in Glow).

    ``kind="additive"``: y2 = x2 + t(x1); ``kind="affine"``: y2 = x2 g(s(x1)) + t(x1) (or the
    glow form (x2 + t) g(s)) with a lipflow scale function g (default Glow's sigmoid(s + 2)).
    """

    def __init__(
        self,
        channels: int,
        hidden: int = 64,
        kind: str = "affine",
        scale: Scale | str | None = None,
        form: str = "realnvp",
    ) -> None:
        super().__init__()
        if kind not in ("additive", "affine"):
            raise LipflowError(f"coupling kind must be 'additive' or 'affine', got {kind!r}")
        if channels < 2:
            raise LipflowError(f"a channel coupling needs at least 2 channels, got {channels}")
        if form not in ("realnvp", "glow"):
            raise LipflowError(f"form must be 'realnvp' or 'glow', got {form!r}")
        self.channels, self.kind, self.form = channels, kind, form
        self.split_at = channels // 2
        transformed = channels - self.split_at
        out = transformed * (2 if kind == "affine" else 1)
        last = nn.Conv2d(hidden, out, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(
            nn.Conv2d(self.split_at, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            last,
        )
        if kind == "affine":
            from lipflow.blocks.scales import Sigmoid

            self.scale = as_scale(scale) if scale is not None else Sigmoid(shift=2.0)
            self.g, self.log_g = torch_scale(self.scale)

    def _conditioner(self, x1: Tensor) -> tuple[Tensor, Tensor | None]:
        h = self.net(x1)
        if self.kind == "additive":
            return h, None
        t, s = h.chunk(2, dim=1)
        return t, s

    def forward_and_logdet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _check_image(x, self.channels, "ConvCoupling")
        x1, x2 = x[:, : self.split_at], x[:, self.split_at :]
        t, s = self._conditioner(x1)
        if s is None:
            return torch.cat([x1, x2 + t], dim=1), torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        g = self.g(s)
        y2 = (x2 + t) * g if self.form == "glow" else x2 * g + t
        return torch.cat([x1, y2], dim=1), self.log_g(s).sum(dim=(1, 2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_and_logdet(x)[0]

    def recompute(self, y: Tensor) -> tuple[list[Tensor], Callable[..., Tensor], Tensor, Tensor]:
        """Invert and rebuild the forward graph with one conditioner pass (memory-saving backprop)."""
        y = y.detach()
        x1 = y[:, : self.split_at].clone().requires_grad_(True)
        y2 = y[:, self.split_at :]
        t, s = self._conditioner(x1)
        g = None if s is None else self.g(s)
        with torch.no_grad():
            if g is None:
                x2 = y2 - t
            else:
                x2 = y2 / g - t if self.form == "glow" else (y2 - t) / g
        x2.requires_grad_(True)
        if g is None:
            y2_again, logdet = x2 + t, torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
        else:
            y2_again = (x2 + t) * g if self.form == "glow" else x2 * g + t
            logdet = self.log_g(s).sum(dim=(1, 2, 3))

        def merge(a: Tensor, b: Tensor) -> Tensor:
            return torch.cat([a, b], dim=1)

        return [x1, x2], merge, merge(x1, y2_again), logdet

    def inverse(self, y: Tensor) -> Tensor:
        y1, y2 = y[:, : self.split_at], y[:, self.split_at :]
        t, s = self._conditioner(y1)
        if s is None:
            return torch.cat([y1, y2 - t], dim=1)
        g = self.g(s)
        x2 = y2 / g - t if self.form == "glow" else (y2 - t) / g
        return torch.cat([y1, x2], dim=1)


class GlowFlow(nn.Module):
    """A sequence of invertible image layers (``blocks``): forward, inverse, log-determinant."""

    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def inverse(self, z: Tensor) -> Tensor:
        for block in reversed(self.blocks):
            z = block.inverse(z)
        return z

    def forward_and_logdet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for block in self.blocks:
            x, logdet = block.forward_and_logdet(x)
            total = total + logdet
        return x, total

    @torch.no_grad()
    def data_init(self, x: Tensor) -> None:
        """Initialise every ActNorm from the activations of the batch ``x`` (Glow)."""
        for block in self.blocks:
            if isinstance(block, ChannelActNorm):
                block.data_init(x)
            x = block(x)


def glow_flow(
    channels: int,
    *,
    levels: int = 2,
    steps_per_level: int = 4,
    hidden: int = 64,
    coupling: str = "affine",
    mixing: str = "conv",
    scale: Scale | str | None = None,
    seed: int = 0,
) -> tuple[GlowFlow, int]:
    """A Glow-like flow and its output channel count: per level a squeeze, then steps of
    ActNorm, mixing ("conv": invertible 1x1 convolution; "shuffle": channel permutation) and a
    coupling ("additive" or "affine")."""
    if mixing not in ("conv", "shuffle"):
        raise LipflowError(f"mixing must be 'conv' (1x1 convolution) or 'shuffle', got {mixing!r}")
    if levels < 1 or steps_per_level < 1:
        raise LipflowError("levels and steps_per_level must be >= 1")
    blocks: list[nn.Module] = []
    for level in range(levels):
        blocks.append(Squeeze())
        channels *= 4
        for step in range(steps_per_level):
            step_seed = seed * 10_000 + level * 100 + step
            blocks.append(ChannelActNorm(channels))
            blocks.append(InvConv1x1(channels, step_seed) if mixing == "conv" else ChannelShuffle(channels, step_seed))
            blocks.append(ConvCoupling(channels, hidden, coupling, scale))
    return GlowFlow(blocks), channels
