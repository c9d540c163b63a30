"""Exceptions and warnings raised by lipflow.

Every error raised for a user's mistake is a :class:`LipflowError` (a ``ValueError``), whose
message names what is wrong and how to fix it. The CLI prints these without a traceback.
"""

from __future__ import annotations

__all__ = ["LipflowError", "MissingExtraError", "NonConvergenceError", "NonConvergenceWarning", "UnboundedError"]


class LipflowError(ValueError):
    """A user-facing error: bad input, bad configuration or an impossible request."""


class MissingExtraError(LipflowError, ModuleNotFoundError):
    """An optional dependency is not installed; the message names the extra that installs it.

    It is also a ``ModuleNotFoundError`` whose ``name`` is the missing module, so code that
    skips on a missing optional package (test suites, plugins) treats it like one.
    """

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name


class UnboundedError(LipflowError):
    """No finite Lipschitz bound can be proven on the requested box (a scale overflows or
    reaches 0 there, or an interval image overflows float64); shrinking the box may help."""


class NonConvergenceWarning(RuntimeWarning):
    """An iterative inverse stopped at ``max_iter`` before reaching its tolerance."""


class NonConvergenceError(ArithmeticError):
    """An iterative inverse did not converge and the caller asked for an exception."""
