"""Rigorous Lipschitz bounds of invertible blocks and flows, and empirical lower bounds.

``lipschitz(block, params, direction=..., box=...)`` returns a :class:`LipschitzBound` of kind
"upper" evaluated with upward rounding; ``estimate(...)`` returns one of kind "lower". Every
result names the theory page (``theory/``) it comes from.
"""

from lipflow.bounds.api import as_box, lipschitz
from lipflow.bounds.estimate import estimate
from lipflow.bounds.flow import reconstruction_bound
from lipflow.bounds.result import LipschitzBound
from lipflow.bounds.rigorous import Box

__all__ = ["Box", "LipschitzBound", "as_box", "estimate", "lipschitz", "reconstruction_bound"]
