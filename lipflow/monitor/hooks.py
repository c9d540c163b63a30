"""Thin adapters that call a :class:`~lipflow.monitor.core.Monitor` from training loops.

``TorchMonitorCallback`` works from a plain torch loop (``callback(step)``) and, duck-typed,
as a PyTorch Lightning callback (``on_train_batch_end`` / ``on_train_end``); Lightning is
never imported. lipflow's own ``fit`` takes ``monitor.fit_callback()``.
"""

from __future__ import annotations

from typing import Any

from lipflow.errors import NumericalInvertibilityError

__all__ = ["TorchMonitorCallback"]


class TorchMonitorCallback:
    """Call ``monitor.step`` after each training batch.

    In a plain loop: ``callback(step)`` (raises ``NumericalInvertibilityError`` when the
    monitor was built with ``on_alarm="raise"``). As a Lightning callback
    (``Trainer(callbacks=[callback])``): the step is ``trainer.global_step``, and an alarm
    with ``on_alarm="raise"`` sets ``trainer.should_stop`` (Lightning's graceful stop) and keeps
    the error in ``callback.error``.
    """

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor
        self.error: NumericalInvertibilityError | None = None

    def __call__(self, step: int) -> list:
        return self.monitor.step(step)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                           *args: Any) -> None:
        try:
            self.monitor.step(int(getattr(trainer, "global_step", batch_idx)))
        except NumericalInvertibilityError as error:
            self.error = error
            trainer.should_stop = True

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.monitor.close()

    def setup(self, *args: Any, **kwargs: Any) -> None:
        """Lightning calls these hooks on every callback; the monitor needs none of them."""

    def teardown(self, *args: Any, **kwargs: Any) -> None:
        """See :meth:`setup`."""
