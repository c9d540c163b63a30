"""Exceptions and warnings raised by lipflow.

Every error raised for a user's mistake is a :class:`LipflowError` (a ``ValueError``), whose
message names what is wrong and how to fix it. The CLI prints these without a traceback.
"""

from __future__ import annotations

__all__ = [
    "LipflowError",
    "MissingExtraError",
    "NonConvergenceError",
    "NonConvergenceWarning",
    "NumericalInvertibilityError",
    "NumericalInvertibilityWarning",
    "UnboundedError",
]


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


class NumericalInvertibilityWarning(RuntimeWarning):
    """A training-time check found a flow drifting towards numerical non-invertibility (the
    message names the rule, the quantity, the layer and the step; see ``lipflow.monitor``)."""


class NumericalInvertibilityError(ArithmeticError):
    """Raised instead of :class:`NumericalInvertibilityWarning` when the monitor was asked to
    stop training (``on_alarm="raise"``); ``alarms`` holds what fired, ``healthy_step`` the
    step of the last check without an alarm (whose parameters the monitor kept)."""

    def __init__(self, message: str, alarms: tuple = (), healthy_step: int | None = None) -> None:
        super().__init__(message)
        self.alarms = alarms
        self.healthy_step = healthy_step
