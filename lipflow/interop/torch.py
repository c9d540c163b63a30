"""The torch bridge: lipflow flows as ``torch.nn.Module`` s, and diagnostics in torch.

``to_torch(flow, params)`` builds a module with the same numerics (float64 agreement with the
NumPy path to rounding); ``from_torch(module)`` gives back ``(block, params)`` with float64
master arrays, e.g. after training in torch. The diagnostics (reconstruction error, the
delta/delta2 error budget of paper Section 2, Jacobian spectra, the bi-directional FD
regulariser of paper Eq. 6, memory-saving gradients and their angle to ordinary ones, the
audit of third-party modules) are re-exported here from their modules.

Importing this module needs torch (``pip install 'lipflow[torch]'``); without it, a
:class:`~lipflow.errors.LipflowError` says so.
"""

from __future__ import annotations

from typing import Any

from lipflow.blocks.base import Block, Params
from lipflow.blocks.coupling import AdditiveCoupling, AffineCoupling
from lipflow.blocks.flow import Flow
from lipflow.blocks.linear import ActNorm, InvertibleLinear, Permutation
from lipflow.blocks.residual import Residual
from lipflow.errors import LipflowError
from lipflow.interop import require_torch

require_torch()
import torch  # noqa: E402

from lipflow.interop.torch_audit import AuditReport, audit_invertible  # noqa: E402
from lipflow.interop.torch_blocks import (  # noqa: E402
    InvertibleModule,
    TorchActNorm,
    TorchAdditiveCoupling,
    TorchAffineCoupling,
    TorchFlow,
    TorchInvertibleLinear,
    TorchPermutation,
)
from lipflow.interop.torch_diagnostics import (  # noqa: E402
    TorchErrorBudget,
    TorchSpectrum,
    error_budget,
    jacobian_spectrum,
    reconstruction_error,
)
from lipflow.interop.torch_measure import measurement_mode, resolve_device  # noqa: E402
from lipflow.interop.torch_memsave import gradient_angle, memory_saving_forward  # noqa: E402
from lipflow.interop.torch_regularisers import fd_forward_and_penalty, fd_penalty, nf_loss  # noqa: E402
from lipflow.interop.torch_residual import TorchResidual  # noqa: E402
from lipflow.interop.torch_thirdparty import ThirdPartyReport, audit  # noqa: E402

__all__ = [
    "AuditReport",
    "InvertibleModule",
    "ThirdPartyReport",
    "TorchActNorm",
    "TorchAdditiveCoupling",
    "TorchAffineCoupling",
    "TorchErrorBudget",
    "TorchFlow",
    "TorchInvertibleLinear",
    "TorchPermutation",
    "TorchResidual",
    "TorchSpectrum",
    "audit",
    "audit_invertible",
    "error_budget",
    "fd_forward_and_penalty",
    "fd_penalty",
    "from_torch",
    "gradient_angle",
    "jacobian_spectrum",
    "measurement_mode",
    "memory_saving_forward",
    "nf_loss",
    "reconstruction_error",
    "resolve_device",
    "to_torch",
]

_MODULES: tuple[tuple[type[Block], type[InvertibleModule]], ...] = (
    (AdditiveCoupling, TorchAdditiveCoupling),
    (AffineCoupling, TorchAffineCoupling),
    (Residual, TorchResidual),
    (Permutation, TorchPermutation),
    (InvertibleLinear, TorchInvertibleLinear),
    (ActNorm, TorchActNorm),
)

_DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in _DTYPES:
        return _DTYPES[dtype]
    raise LipflowError(f"unknown torch dtype {dtype!r}; use one of {', '.join(_DTYPES)} or a torch.dtype")


def to_torch(
    block: Block, params: Params, *, dtype: torch.dtype | str = torch.float64, device: Any = "cpu"
) -> InvertibleModule:
    """A ``torch.nn.Module`` computing the same map as ``block`` with ``params``.

    Args:
        block: a lipflow block or ``Flow`` (every block family is supported).
        params: its parameters (``block.init(seed)`` or trained float64 master arrays).
        dtype: working dtype of the module's parameters; inputs must have the same dtype.
        device: where the module lives ("cpu", "cuda", ...; see :func:`resolve_device`).

    Example:
        >>> import numpy as np, torch, lipflow
        >>> from lipflow.interop.torch import to_torch
        >>> flow = lipflow.Flow([lipflow.AffineCoupling(2), lipflow.Reverse(2)])
        >>> params = flow.init(seed=0)
        >>> module = to_torch(flow, params)
        >>> x = np.array([[0.5, -1.0]])
        >>> bool(np.allclose(module(torch.from_numpy(x)).detach().numpy(), flow.forward(params, x)))
        True
    """
    dtype = _as_dtype(dtype)
    if isinstance(block, Flow):
        block._check_params(params)
        children = [_block_module(b, p, dtype) for b, p in zip(block.blocks, params, strict=True)]
        module: InvertibleModule = TorchFlow(block, children)
    else:
        module = _block_module(block, params, dtype)
    return module.to(resolve_device(device))


def _block_module(block: Block, params: Params, dtype: torch.dtype) -> InvertibleModule:
    if isinstance(block, Flow):
        return to_torch(block, params, dtype=dtype)
    for kind, module_type in _MODULES:
        if type(block) is kind:
            try:
                return module_type(block, params, dtype)
            except (KeyError, TypeError, IndexError) as error:
                raise LipflowError(
                    f"params do not match the {type(block).__name__} block ({error!r}); pass the "
                    "parameters made by block.init(seed) or a trained copy of them"
                ) from None
    raise LipflowError(f"the torch bridge cannot export {type(block).__name__} blocks")


def from_torch(module: InvertibleModule) -> tuple[Block, Params]:
    """(block, params): the lipflow block and float64 master parameters of an exported module."""
    if not isinstance(module, InvertibleModule):
        raise LipflowError(
            f"from_torch needs a module made by to_torch, got {type(module).__name__}; audit other "
            "invertible modules with audit_invertible(forward, inverse, x)"
        )
    return module.spec, module.export_params()
