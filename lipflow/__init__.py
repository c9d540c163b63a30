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
    load_flow,
    save_flow,
)
from lipflow.errors import LipflowError, NonConvergenceError, NonConvergenceWarning
from lipflow.precision import PRECISION_NAMES, Precision, precision

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "PRECISION_NAMES",
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "Block",
    "Bounded",
    "Constant",
    "Exp",
    "FixedPointInfo",
    "Flow",
    "Identity",
    "InvertibleLinear",
    "JacobianSpectrum",
    "LipflowError",
    "NonConvergenceError",
    "NonConvergenceWarning",
    "Permutation",
    "Precision",
    "Residual",
    "Reverse",
    "Sigmoid",
    "SoftClamp",
    "__version__",
    "jacobian",
    "jacobian_spectrum",
    "load_flow",
    "precision",
    "save_flow",
]
