"""lipflow: is this invertible network *numerically* invertible, and why not?

Framework-free invertible blocks on autograd, runnable at any precision, with Lipschitz bounds,
error analysis against high-precision ground truth and property-based testing helpers.
"""

from lipflow.analysis.jacobian import JacobianSpectrum, jacobian, jacobian_spectrum
from lipflow.blocks import (
    MLP,
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    Block,
    Bounded,
    Constant,
    Exp,
    FixedPointInfo,
    Flow,
    Identity,
    InvertibleLinear,
    Permutation,
    Residual,
    Reverse,
    Sigmoid,
    SoftClamp,
)
from lipflow.errors import LipflowError, NonConvergenceError, NonConvergenceWarning
from lipflow.precision import PRECISION_NAMES, Precision, precision

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "precision",
    "Precision",
    "PRECISION_NAMES",
    "Block",
    "Flow",
    "AdditiveCoupling",
    "AffineCoupling",
    "Residual",
    "Permutation",
    "Reverse",
    "InvertibleLinear",
    "ActNorm",
    "MLP",
    "Constant",
    "Sigmoid",
    "Bounded",
    "Exp",
    "SoftClamp",
    "Identity",
    "FixedPointInfo",
    "jacobian",
    "jacobian_spectrum",
    "JacobianSpectrum",
    "LipflowError",
    "NonConvergenceWarning",
    "NonConvergenceError",
]
