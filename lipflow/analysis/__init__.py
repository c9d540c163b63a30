"""Error analysis: Jacobians and spectra, ground truth, error budgets."""

from lipflow.analysis.jacobian import JacobianSpectrum, jacobian, jacobian_spectrum, singular_values

__all__ = ["JacobianSpectrum", "jacobian", "jacobian_spectrum", "singular_values"]
