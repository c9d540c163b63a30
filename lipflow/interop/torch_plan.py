"""Mixed-precision plans on the torch bridge: each block a module in its own dtype.

``to_torch_plan(flow, params, plan)`` exports every block twice, once in its forward dtype and
once in its inverse dtype (``plan.forward[k]`` / ``plan.inverse[k]``), and casts the activation at
every block boundary, like :func:`lipflow.blocks.plan.run_forward`. Strict contexts map to their
storage dtype (torch rounds elementwise operations per operation; its float16/bfloat16 matmuls
accumulate in float32 on CUDA, like NumPy's float16). Needs torch (``pip install 'lipflow[torch]'``).
"""

from __future__ import annotations

from typing import Any

from lipflow.blocks.flow import Flow
from lipflow.blocks.plan import Plan
from lipflow.interop import require_torch

require_torch()
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from lipflow.interop.torch import to_torch  # noqa: E402
from lipflow.interop.torch_measure import resolve_device  # noqa: E402

__all__ = ["TORCH_DTYPES", "PlannedTorchFlow", "to_torch_plan"]

TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float16-strict": torch.float16,
                "bfloat16-strict": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


class PlannedTorchFlow(nn.Module):
    """A flow whose block k runs in ``forward_dtypes[k]`` forward and ``inverse_dtypes[k]`` inverse."""

    def __init__(self, plan: Plan, forward_blocks: list[nn.Module], inverse_blocks: list[nn.Module]) -> None:
        super().__init__()
        self.plan = plan
        self.forward_blocks = nn.ModuleList(forward_blocks)
        self.inverse_blocks = nn.ModuleList(inverse_blocks)
        self.forward_dtypes = [TORCH_DTYPES[n] for n in plan.forward]
        self.inverse_dtypes = [TORCH_DTYPES[n] for n in plan.inverse]

    def forward(self, x: Tensor) -> Tensor:
        for block, dtype in zip(self.forward_blocks, self.forward_dtypes, strict=True):
            x = block(x.to(dtype))
        return x

    def inverse(self, z: Tensor) -> Tensor:
        for k in reversed(range(len(self.inverse_blocks))):
            z = self.inverse_blocks[k].inverse(z.to(self.inverse_dtypes[k]))
        return z


def to_torch_plan(flow: Flow, params: Any, plan: Plan, *, device: Any = "cpu") -> PlannedTorchFlow:
    """Export ``flow`` under ``plan`` (one module per block and direction, each in its dtype)."""
    flow = plan.check(flow)
    forward = [to_torch(b, p, dtype=TORCH_DTYPES[n]) for b, p, n in zip(flow.blocks, params, plan.forward, strict=True)]
    inverse = [to_torch(b, p, dtype=TORCH_DTYPES[n]) for b, p, n in zip(flow.blocks, params, plan.inverse, strict=True)]
    return PlannedTorchFlow(plan, forward, inverse).to(resolve_device(device))
