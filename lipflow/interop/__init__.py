"""Optional bridges to other array frameworks.

``lipflow.interop.torch`` exports lipflow flows to ``torch.nn.Module`` s and runs lipflow's
diagnostics natively in torch (install with ``pip install 'lipflow[torch]'``). This package
itself never imports torch: importing ``lipflow.interop`` works without it, and the torch
modules raise a :class:`~lipflow.errors.MissingExtraError` that says how to install it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from lipflow.errors import MissingExtraError

__all__ = ["TORCH_INSTALL_HINT", "require_torch"]

TORCH_INSTALL_HINT = "pip install 'lipflow[torch]' (or pip install torch)"


def require_torch() -> ModuleType:
    """The ``torch`` module, or a :class:`LipflowError` naming how to install it."""
    try:
        return importlib.import_module("torch")
    except ImportError as error:
        raise MissingExtraError(
            f"the torch bridge needs PyTorch, which is not installed ({error}); install it with {TORCH_INSTALL_HINT}",
            name="torch",
        ) from None
