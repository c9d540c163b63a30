"""Which implementation runs the double-double, triple-double and strict low-precision kernels:
NumPy or numba.

numba is an optional accelerator (``pip install 'lipflow[fast]'``). The compiled kernels
evaluate the *same* sequence of IEEE operations as the NumPy kernels, one element at a time,
so their results are bit-identical (``tests/test_dd_numba.py`` and ``tests/test_strict_held.py``
check it) and the error bounds of the NumPy kernels (``theory/lem-dd-expm1.md``,
``theory/lem-binary32-double-rounding.md``) carry over. Importing lipflow never imports
numba: the kernels compile on first use (cached on disk with ``cache=True``).

The choice is a context variable (thread- and task-local): ``"auto"`` (numba when installed,
the default; the environment variable ``LIPFLOW_KERNELS`` sets another default), ``"numpy"``
or ``"numba"``:

>>> from lipflow.precision.accel import kernels, active_backend
>>> with kernels("numpy"):
...     active_backend()
'numpy'
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import os
from collections.abc import Iterator

from lipflow.errors import LipflowError

__all__ = ["BACKENDS", "INSTALL_HINT", "active_backend", "kernels", "numba_available"]

BACKENDS = ("auto", "numpy", "numba")
INSTALL_HINT = "the compiled kernels need numba: pip install 'lipflow[fast]'"

_choice: contextvars.ContextVar[str] = contextvars.ContextVar(
    "lipflow_kernels", default=os.environ.get("LIPFLOW_KERNELS", "auto").strip().lower() or "auto"
)


@functools.cache
def numba_available() -> bool:
    """Whether numba can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("numba") is not None
    except (ImportError, ValueError):  # e.g. sys.modules["numba"] = None
        return False


def active_backend() -> str:
    """``"numba"`` or ``"numpy"``: what the kernels use here and now."""
    choice = _choice.get()
    if choice not in BACKENDS:
        raise LipflowError(f"LIPFLOW_KERNELS={choice!r} is not one of {', '.join(BACKENDS)}")
    if choice == "numba" and not numba_available():
        raise LipflowError(INSTALL_HINT)
    if choice == "auto":
        return "numba" if numba_available() else "numpy"
    return choice


@contextlib.contextmanager
def kernels(backend: str) -> Iterator[None]:
    """Run the block inside with ``backend`` (``"auto"``, ``"numpy"`` or ``"numba"``)."""
    backend = str(backend).strip().lower()
    if backend not in BACKENDS:
        raise LipflowError(f"unknown kernel backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "numba" and not numba_available():
        raise LipflowError(INSTALL_HINT)
    token = _choice.set(backend)
    try:
        yield
    finally:
        _choice.reset(token)
