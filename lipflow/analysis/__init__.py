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
    "forward_and_inverse_spectra",
    "jacobian",
    "jacobian_spectrum",
    "singular_values",
]
