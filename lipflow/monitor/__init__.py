"""A training-time invertibility monitor: warn before a flow becomes numerically non-invertible.

``Monitor(model, probe, every=50)`` checks a lipflow flow (NumPy/autograd) or a torch model
(through ``lipflow.interop.adapters``) on a fixed in-distribution probe and an
out-of-distribution one: round-trip error at the working precision, % Inf/NaN, the smallest
affine scale per block, Lanczos estimates of sigma_min / sigma_max of the Jacobian, and every
k-th check the per-layer attribution of the round-trip error. Rules whose thresholds derive
from the unit roundoff (``lipflow.monitor.rules``) raise a
:class:`~lipflow.errors.NumericalInvertibilityWarning` (or stop training). Outputs: an
append-only CSV, a figure, a one-line status. Importing this package never imports torch.
"""

from lipflow.errors import NumericalInvertibilityError, NumericalInvertibilityWarning
from lipflow.monitor.core import Monitor
from lipflow.monitor.hooks import TorchMonitorCallback
from lipflow.monitor.probes import Probe, make_probe
from lipflow.monitor.rules import Alarm, Thresholds

__all__ = [
    "Alarm",
    "Monitor",
    "NumericalInvertibilityError",
    "NumericalInvertibilityWarning",
    "Probe",
    "Thresholds",
    "TorchMonitorCallback",
    "make_probe",
]
