"""Error analysis: Jacobians and spectra, ground truth, error budgets, per-layer attribution."""

from lipflow.analysis.jacobian import (
    BiSpectrum,
    JacobianSpectrum,
    forward_and_inverse_spectra,
    jacobian,
    jacobian_spectrum,
    singular_values,
)

__all__ = [
    "BiSpectrum",
    "JacobianSpectrum",
    "advise",
    "forward_and_inverse_spectra",
    "jacobian",
    "jacobian_spectrum",
    "singular_values",
]


def __getattr__(name: str):
    """``advise`` (lipflow.analysis.advisor) is imported on first use: it pulls the bounds."""
    if name == "advise":
        from lipflow.analysis.advisor import advise

        return advise
    raise AttributeError(f"module 'lipflow.analysis' has no attribute {name!r}")
