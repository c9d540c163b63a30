"""Reproducible measurement in torch: device choice, and full-precision arithmetic.

On recent GPUs torch may run float32 matmuls and convolutions in TF32 (10-bit mantissa) and
reduce float16/bfloat16 matmuls in reduced precision; either changes what "float32" means and
would make error measurements depend on the machine. :func:`measurement_mode` switches all of
them off (and asks for deterministic algorithms) for the duration of a measurement and restores
the previous settings afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lipflow.errors import LipflowError
from lipflow.interop import require_torch

require_torch()
import torch  # noqa: E402

__all__ = ["measurement_mode", "precision_settings", "resolve_device"]


def resolve_device(device: Any = "auto") -> torch.device:
    """A torch device: ``"auto"`` is CUDA when present, else the CPU; "cuda" without CUDA is an error."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise LipflowError(f"unknown device {device!r} ({error}); use 'auto', 'cpu' or 'cuda[:index]'") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise LipflowError(f"device {device!r} was requested but CUDA is not available; use 'cpu' or 'auto'")
    return resolved


def precision_settings() -> dict[str, Any]:
    """The current values of the settings that :func:`measurement_mode` controls."""
    matmul = torch.backends.cuda.matmul
    return {
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_allow_tf32": matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "fp16_reduced_precision_reduction": matmul.allow_fp16_reduced_precision_reduction,
        "bf16_reduced_precision_reduction": matmul.allow_bf16_reduced_precision_reduction,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }


def _apply(settings: dict[str, Any]) -> None:
    matmul = torch.backends.cuda.matmul
    torch.set_float32_matmul_precision(settings["float32_matmul_precision"])
    matmul.allow_tf32 = settings["cuda_matmul_allow_tf32"]
    torch.backends.cudnn.allow_tf32 = settings["cudnn_allow_tf32"]
    matmul.allow_fp16_reduced_precision_reduction = settings["fp16_reduced_precision_reduction"]
    matmul.allow_bf16_reduced_precision_reduction = settings["bf16_reduced_precision_reduction"]
    torch.backends.cudnn.deterministic = settings["cudnn_deterministic"]
    torch.backends.cudnn.benchmark = settings["cudnn_benchmark"]


@contextmanager
def measurement_mode() -> Iterator[dict[str, Any]]:
    """Full-precision, deterministic kernels inside the block; previous settings restored after.

    Yields the settings in force (for logging next to the numbers they produced).
    """
    previous = precision_settings()
    strict = {
        "float32_matmul_precision": "highest",
        "cuda_matmul_allow_tf32": False,
        "cudnn_allow_tf32": False,
        "fp16_reduced_precision_reduction": False,
        "bf16_reduced_precision_reduction": False,
        "cudnn_deterministic": True,
        "cudnn_benchmark": False,
    }
    _apply(strict)
    try:
        yield dict(strict)
    finally:
        _apply(previous)
