"""Worker processes that die with their parent, and a two-stage Ctrl-C for a running sweep.

A sweep's workers must never outlive the ``lipflow sweep`` that started them (a killed parent
would otherwise leave them blocked on a pipe, holding the folder). Each worker therefore

* ignores Ctrl-C (the parent decides what an interrupt means),
* closes its inherited copy of the folder lock (:func:`lipflow.sweep.lock.release_inherited_locks`),
* asks Linux to SIGKILL it when its parent dies (``prctl(PR_SET_PDEATHSIG)``), and elsewhere
  polls its parent pid twice a second.

In the parent, :class:`StopRequest` turns the first Ctrl-C into "finish the cells in flight,
store them, then stop" (it says so at once) and the second into "stop now".
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType

from lipflow.sweep.lock import release_inherited_locks

__all__ = ["PARENT_POLL_S", "StopRequest", "die_with_parent", "worker_initializer"]

PR_SET_PDEATHSIG = 1
PARENT_POLL_S = 0.5


def die_with_parent(parent: int) -> None:
    """End this process (SIGKILL) as soon as process ``parent`` is gone."""
    installed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            installed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            installed = False
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
    if not installed:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(PARENT_POLL_S)
            os._exit(1)

        threading.Thread(target=watch, name="lipflow-parent-watch", daemon=True).start()


def worker_initializer(parent: int) -> None:
    """Initializer of a sweep's pool workers (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    release_inherited_locks()
    die_with_parent(parent)


class StopRequest:
    """While active (``with StopRequest(describe) as stop:``), SIGINT no longer raises at once.

    The first Ctrl-C sets :attr:`requested`, calls ``on_first()`` (which cancels queued work and
    returns how many cells are still running) and prints ``stopping: N cells in flight``; the
    second raises :class:`KeyboardInterrupt` wherever the main thread is. Outside the main
    thread it does nothing (signals are delivered there only).
    """

    def __init__(self, on_first: Callable[[], int]) -> None:
        self._on_first = on_first
        self.requested = False
        self._previous: object = None
        self._active = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        in_flight = self._on_first()
        message = (f"\nstopping: {in_flight} cell{'s' if in_flight != 1 else ''} in flight; they are stored as "
                   "they finish (Ctrl-C again to stop now; finished cells are kept either way)\n")
        os.write(2, message.encode())  # not print(): the handler may interrupt a write to stderr

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._active = True
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._active:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
            self._active = False
