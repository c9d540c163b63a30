"""Public assertion helpers with tolerances from the precision and proven bounds.

Each check accepts either a lipflow block / Flow with its ``params``, or a user's own plain
functions: ``forward(x)`` with ``inverse=`` (and ``logdet=``). Plain NumPy functions are run at
the working precision by passing arrays of that dtype, and at wider hardware precisions
(float64, longdouble) for the ground truth; a function that also accepts a ``ctx`` keyword
(written with lipflow's precision contexts) can be run in mpmath, which float64 work needs.

On failure an ``AssertionError`` shows the counterexample's numbers (x, ||delta||,
||delta2||, the bound, the ratio), so a user can act on it.

Example, a user's own invertible function: y = x + 0.5 tanh(x) has derivative in [1, 1.5], so
its inverse is 1-Lipschitz:

    >>> import numpy as np
    >>> from lipflow.testing import assert_error_bound
    >>> def f(x):
    ...     return x + x.dtype.type(0.5) * np.tanh(x)
    >>> def f_inv(y):  # Newton's method
    ...     x = y.copy()
    ...     for _ in range(30):
    ...         x = x - (f(x) - y) / (1 + x.dtype.type(0.5) * (1 - np.tanh(x) ** 2))
    ...     return x
    >>> assert_error_bound(f, np.linspace(-3, 3, 8, dtype=np.float32).reshape(4, 2),
    ...                    inverse=f_inv, lipschitz_inverse=1.0)  # samples checked
    4
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as onp
from autograd import jacobian as autograd_jacobian

from lipflow.analysis.budget import error_budget
from lipflow.analysis.reference import HARDWARE_CANDIDATES, evaluate_reference, to_mp
from lipflow.blocks.base import Block, Params
from lipflow.errors import LipflowError
from lipflow.precision import Precision, precision, resolve_precision

__all__ = ["DEFAULT_OPS", "assert_error_bound", "assert_invertible", "assert_lipschitz_bound", "assert_logdet"]

#: operations per output assumed by the first-order error model of the a-priori tolerances
DEFAULT_OPS = 32


# ---- a model: a lipflow block or plain functions ---------------------------------------------


def _torch_case(model: Any, x: Any) -> bool:
    """A torch model or tensor (checked without importing torch): handled by lipflow.interop.torch_testing."""
    if "torch" not in sys.modules:
        return False
    from lipflow.interop.torch_testing import is_torch_case

    return is_torch_case(model, x)


def _accepts_ctx(fun: Callable) -> bool:
    try:
        parameters = inspect.signature(fun).parameters
    except (TypeError, ValueError):
        return False
    return "ctx" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


@dataclass(frozen=True)
class _Maps:
    forward: Callable[[Any, Precision], Any]
    inverse: Callable[[Any, Precision], Any] | None
    logdet: Callable[[Any, Precision], Any] | None
    mp_capable: bool
    block: Block | None


def _maps(model: Any, params: Params, inverse: Callable | None, logdet: Callable | None, who: str) -> _Maps:
    if isinstance(model, Block):
        if params is None:
            raise LipflowError(f"{who}: a lipflow block needs its params, e.g. {who}(block, x, params=block.init(0))")
        return _Maps(
            forward=lambda x, ctx: model.forward(params, x, ctx=ctx),
            inverse=lambda y, ctx: model.inverse(params, y, ctx=ctx),
            logdet=lambda x, ctx: model.logdet(params, x, ctx=ctx),
            mp_capable=True,
            block=model,
        )
    if not callable(model):
        raise LipflowError(f"{who}: model must be a lipflow block or a function forward(x), got {type(model).__name__}")

    def wrap(fun: Callable | None) -> Callable[[Any, Precision], Any] | None:
        if fun is None:
            return None
        if _accepts_ctx(fun):
            return lambda x, ctx: fun(x, ctx=ctx)
        return lambda x, ctx: fun(x)

    capable = _accepts_ctx(model) and (inverse is None or _accepts_ctx(inverse))
    return _Maps(wrap(model), wrap(inverse), wrap(logdet), capable, None)


def _working(x: Any, ctx: Precision | str | None, who: str) -> tuple[onp.ndarray, Precision]:
    context = resolve_precision(ctx, x)
    x = onp.asarray(context.cast(onp.asarray(x)))
    if x.ndim != 2:
        raise LipflowError(f"{who}: x must have shape (n, dim), got {x.shape}; reshape one point with x.reshape(1, -1)")
    return x, context


def _call(fun: Callable, x: Any, ctx: Precision, what: str) -> onp.ndarray:
    with onp.errstate(all="ignore"):
        value = onp.asarray(fun(x, ctx))
    if value.shape != onp.shape(x) and what != "logdet":
        raise LipflowError(f"{what} returned shape {value.shape} for input shape {onp.shape(x)}; it must keep (n, dim)")
    if value.dtype != onp.asarray(x).dtype:
        raise LipflowError(
            f"{what} returned {value.dtype} for {onp.asarray(x).dtype} input: it does not compute at the "
            "working precision; route constants through the input's dtype (x.dtype.type(0.5))"
        )
    return value


def _lift(x: onp.ndarray, ctx: Precision) -> Any:
    return to_mp(x, ctx) if ctx.is_arbitrary else ctx.cast(x)


def _norm_rows(v: onp.ndarray) -> onp.ndarray:
    return onp.sqrt(onp.sum(onp.square(onp.asarray(v, dtype=onp.float64)), axis=1))


def _fmt(v: Any) -> str:
    return onp.array2string(onp.asarray(v, dtype=onp.float64), precision=8, separator=", ")


# ---- checks ----------------------------------------------------------------------------------


def assert_invertible(model: Any, x: Any, *, params: Params = None, inverse: Callable | None = None,
                      ctx: Precision | str | None = None, lipschitz_inverse: float = 1.0,
                      ops: int = DEFAULT_OPS) -> None:
    """Assert ||x - F_p^-1(F_p(x))|| <= gamma_ops (Lip(F^-1) ||F_p(x)|| + ||x||) for every row.

    The tolerance is the first-order rounding model of paper Section 2: forward and inverse
    each err by at most gamma_ops relative (Higham's gamma_n = n u / (1 - n u) at the working
    precision) and the forward error is amplified by Lip(F^-1) (pass a proven bound). A
    non-finite reconstruction always fails. For a rigorous check against ground truth use
    :func:`assert_error_bound`.
    """
    if _torch_case(model, x):
        from lipflow.interop import torch_testing

        return torch_testing.assert_invertible(model, x, inverse=inverse, ctx=ctx, ops=ops,
                                               lipschitz_inverse=lipschitz_inverse)
    maps = _maps(model, params, inverse, None, "assert_invertible")
    if maps.inverse is None:
        raise LipflowError("assert_invertible: pass inverse=your_inverse_function")
    x, context = _working(x, ctx, "assert_invertible")
    if not (lipschitz_inverse >= 0):
        raise LipflowError(f"lipschitz_inverse must be a non-negative number, got {lipschitz_inverse!r}")
    z = _call(maps.forward, x, context, "forward")
    x_rec = _call(maps.inverse, z, context, "inverse")
    x64, z64, rec64 = (context.to_float64(v) for v in (x, z, x_rec))
    with onp.errstate(all="ignore"):
        error = _norm_rows(x64 - rec64)
        tolerance = context.gamma(ops) * (lipschitz_inverse * _norm_rows(z64) + _norm_rows(x64))
    bad = onp.flatnonzero(~(error <= tolerance) | ~onp.all(onp.isfinite(rec64), axis=1))
    if bad.size:
        i = int(bad[0])
        raise AssertionError(
            f"not invertible at {context.name} for {bad.size} of {len(x)} samples; first: x={_fmt(x64[i])}, "
            f"F(x)={_fmt(z64[i])}, F^-1(F(x))={_fmt(rec64[i])}, ||x - F^-1(F(x))||={error[i]:.6g} > "
            f"tolerance {tolerance[i]:.6g} = gamma_{ops} (Lip(F^-1)={lipschitz_inverse:g} ||F(x)|| + ||x||)"
        )


def _callable_budget(maps: _Maps, x: onp.ndarray, context: Precision,
                     lipschitz_inverse: float | Callable[[onp.ndarray, onp.ndarray], float]) -> dict[str, Any]:
    z_delta = _call(maps.forward, x, context, "forward")
    x_delta2 = _call(maps.inverse, z_delta, context, "inverse")
    numpy_only = not maps.mp_capable
    finite = onp.all(onp.isfinite(context.to_float64(z_delta)), axis=1)
    inverse_finite = onp.all(onp.isfinite(context.to_float64(x_delta2)), axis=1)

    def forward_at(ref: Precision, rows: onp.ndarray) -> Any:
        return maps.forward(_lift(x[rows], ref), ref)

    def inverse_at(ref: Precision, rows: onp.ndarray) -> Any:
        return maps.inverse(_lift(z_delta[rows], ref), ref)

    ref_z = evaluate_reference(forward_at, context, len(x), active=finite, dim=x.shape[1],
                               candidates=HARDWARE_CANDIDATES, numpy_only=numpy_only)
    ref_x1 = evaluate_reference(inverse_at, context, len(x), active=finite, dim=x.shape[1],
                                candidates=HARDWARE_CANDIDATES, numpy_only=numpy_only)
    carrier = max((ref_z.carrier, ref_x1.carrier), key=lambda c: c.mantissa_bits)
    z, x1 = carrier.cast(ref_z.value), carrier.cast(ref_x1.value)
    as_mp = [to_mp(v, carrier) for v in (x, z_delta, x_delta2)]
    delta_norm = _norm_rows(carrier.to_float64(as_mp[1] - z))
    delta2_norm = _norm_rows(carrier.to_float64(as_mp[2] - x1))
    error = _norm_rows(carrier.to_float64(as_mp[0] - as_mp[2]))
    z64, zd64 = carrier.to_float64(z), context.to_float64(z_delta)
    lip = onp.full(len(x), onp.inf)
    for i in onp.flatnonzero(finite):
        if callable(lipschitz_inverse):
            low = onp.nextafter(onp.fmin(z64[i], zd64[i]), -onp.inf)
            high = onp.nextafter(onp.fmax(z64[i], zd64[i]), onp.inf)
            lip[i] = float(lipschitz_inverse(low, high))
        else:
            lip[i] = float(lipschitz_inverse)
    with onp.errstate(all="ignore"):
        bound = (lip * delta_norm + delta2_norm) * (1 + 2.0**-50)
        slack = lip * ref_z.error_estimate + ref_x1.error_estimate
    stable = ref_z.stable & ref_x1.stable
    return dict(x=context.to_float64(x), z_delta=zd64, delta_norm=delta_norm, delta2_norm=delta2_norm,
                error=error, lip=lip, bound=bound, slack=slack, stable=stable, finite=finite,
                inverse_finite=inverse_finite,
                reference=f"{ref_z.describe()}; {ref_x1.describe()}")


def assert_error_bound(model: Any, x: Any, *, params: Params = None, inverse: Callable | None = None,
                       ctx: Precision | str | None = None,
                       lipschitz_inverse: float | Callable[[onp.ndarray, onp.ndarray], float] | None = None,
                       allow_nonfinite: bool = True, allow_undecided: bool = False,
                       allow_unproven: bool = False) -> int | None:
    """Assert the reconstruction bound ||x - x_delta2|| <= Lip(F^-1) ||delta|| + ||delta2||
    (paper Section 2) for every row of ``x``, with delta and delta2 measured against a stable
    reference (:mod:`lipflow.analysis.reference`).

    For a lipflow block Lip(F^-1) comes from ``lipflow.bounds`` on the box spanned by z and
    z_delta; for your own functions pass ``lipschitz_inverse``: a proven number, or a function
    ``(low, high) -> bound`` on a box. Samples whose computed forward or inverse is Inf/NaN make
    the bound vacuous (delta or delta2 is infinite); they fail only with ``allow_nonfinite=False``.
    Samples whose reference does not stabilise fail unless ``allow_undecided``. A checked sample
    without a finite proven Lip(F^-1) checks nothing: it fails unless ``allow_unproven``.

    Returns the number of samples the bound was actually checked on (finite, decided and with a
    finite proven Lip(F^-1)), so a caller that allows the other kinds can count what was proven;
    None for torch models (:func:`lipflow.interop.torch_testing.assert_error_bound`).
    """
    if _torch_case(model, x):
        from lipflow.interop import torch_testing

        return torch_testing.assert_error_bound(model, x, inverse=inverse, ctx=ctx, lipschitz_inverse=lipschitz_inverse,
                                                allow_nonfinite=allow_nonfinite)
    maps = _maps(model, params, inverse, None, "assert_error_bound")
    x, context = _working(x, ctx, "assert_error_bound")
    if maps.block is not None:
        if lipschitz_inverse is not None:
            raise LipflowError("assert_error_bound takes Lip(F^-1) of a lipflow block from lipflow.bounds; "
                               "drop lipschitz_inverse=, or pass the block's forward/inverse as functions")
        budget = error_budget(maps.block, params, x, ctx=context)
        data = dict(x=budget.x, z_delta=budget.z_delta, delta_norm=budget.delta_norm,
                    delta2_norm=budget.delta2_norm, error=budget.reconstruction_error, lip=budget.lipschitz_bound,
                    bound=budget.bound, slack=budget.reference_slack, stable=budget.reference_stable,
                    finite=~budget.nonfinite_forward, inverse_finite=~budget.nonfinite_inverse,
                    reference=f"{budget.reference_forward}; {budget.reference_inverse}")
    else:
        if maps.inverse is None or lipschitz_inverse is None:
            raise LipflowError("assert_error_bound on your own functions needs inverse= and lipschitz_inverse= "
                               "(a proven upper bound of Lip(F^-1), or a function (low, high) -> bound)")
        data = _callable_budget(maps, x, context, lipschitz_inverse)
    stable = data["stable"]
    # a non-finite computed forward or inverse makes delta or delta2 infinite: the bound is vacuous there
    finite = data["finite"] & data["inverse_finite"]
    if not allow_nonfinite and not onp.all(finite):
        i = int(onp.flatnonzero(~finite)[0])
        raise AssertionError(
            f"{int(onp.sum(~data['finite']))} of {len(x)} samples overflow to Inf/NaN in the forward pass and "
            f"{int(onp.sum(data['finite'] & ~data['inverse_finite']))} more in the inverse at {context.name}; "
            f"first x={_fmt(data['x'][i])}, z_delta={_fmt(data['z_delta'][i])}"
        )
    if not allow_undecided and not onp.all(stable | ~finite):
        i = int(onp.flatnonzero(~stable & finite)[0])
        raise AssertionError(f"the reference did not stabilise for x={_fmt(data['x'][i])} ({data['reference']}); "
                             "the bound cannot be checked there (pass allow_undecided=True to skip such samples)")
    unproven = finite & stable & ~onp.isfinite(onp.asarray(data["lip"], dtype=onp.float64))
    if not allow_unproven and onp.any(unproven):
        i = int(onp.flatnonzero(unproven)[0])
        raise AssertionError(
            f"no finite proven Lip(F^-1) for {int(onp.sum(unproven))} of {int(onp.sum(finite & stable))} checked "
            f"samples at {context.name}, so the bound checks nothing there; first x={_fmt(data['x'][i])}, "
            f"z_delta={_fmt(data['z_delta'][i])} (pass allow_unproven=True to accept such samples)"
        )
    with onp.errstate(invalid="ignore"):
        holds = data["error"] <= (data["bound"] + data["slack"]) * (1 + 2.0**-50)
    bad = onp.flatnonzero(finite & stable & ~holds)
    if bad.size:
        i = int(bad[0])
        raise AssertionError(
            f"reconstruction bound violated at {context.name} for {bad.size} of {len(x)} samples; first: "
            f"x={_fmt(data['x'][i])}, z_delta={_fmt(data['z_delta'][i])}, ||delta||={data['delta_norm'][i]:.6g}, "
            f"||delta2||={data['delta2_norm'][i]:.6g}, Lip(F^-1)<={data['lip'][i]:.6g}, "
            f"bound={data['bound'][i]:.6g} (+ reference slack {data['slack'][i]:.3g}), "
            f"||x - x_delta2||={data['error'][i]:.6g}, ratio={data['error'][i] / data['bound'][i]:.6g}; "
            f"reference {data['reference']}"
        )
    return int(onp.sum(finite & stable & ~unproven))


def assert_logdet(model: Any, x: Any, *, params: Params = None, logdet: Callable | None = None,
                  ctx: Precision | str | None = None, ops: int = DEFAULT_OPS) -> None:
    """Assert |logdet_p(x) - log|det J_F(x)|| <= gamma_ops (|log|det J|| + dim) per row.

    The reference log-determinant comes from the Jacobian of the forward map (autograd) at a
    reference precision (mpmath for blocks and ctx-aware functions, else longdouble); its
    determinant is taken in mpmath. Your own ``forward`` must then be written with
    ``autograd.numpy``. The tolerance is the first-order model: each of the O(dim) log terms errs
    by at most gamma_ops relative, plus one unit of absolute error per term.
    """
    if logdet is None and _torch_case(model, x):
        from lipflow.interop import torch_testing

        return torch_testing.assert_logdet(model, x, ctx=ctx, ops=ops)
    maps = _maps(model, params, None, logdet, "assert_logdet")
    if maps.logdet is None:
        raise LipflowError("assert_logdet: pass logdet=your_logdet_function (or a lipflow block with params)")
    x, context = _working(x, ctx, "assert_logdet")
    computed = _call(maps.logdet, x, context, "logdet")
    ref = precision("mp40") if maps.mp_capable else precision("longdouble")
    if maps.block is not None:
        from lipflow.analysis.jacobian import jacobian

        jac = jacobian(maps.block, params, _lift(x, ref), ctx=ref)
    else:
        rows = []
        for i in range(len(x)):
            point = _lift(x[i:i + 1], ref)
            rows.append(onp.asarray(autograd_jacobian(lambda v: maps.forward(v, ref))(point))[0, :, 0, :])
        jac = onp.stack(rows)
    mp = ref.context if ref.is_arbitrary else precision("mp40").context
    reference = onp.array([float(mp.log(abs(mp.det(mp.matrix(to_mp(onp.asarray(m), precision("mp40")).tolist())))))
                           for m in jac])
    got = context.to_float64(computed).reshape(-1)
    tolerance = context.gamma(ops) * (onp.abs(reference) + x.shape[1])
    with onp.errstate(invalid="ignore"):
        bad = onp.flatnonzero(~(onp.abs(got - reference) <= tolerance))
    if bad.size:
        i = int(bad[0])
        raise AssertionError(
            f"log-determinant wrong at {context.name} for {bad.size} of {len(x)} samples; first: "
            f"x={_fmt(context.to_float64(x)[i])}, computed {got[i]:.10g}, reference log|det J| = "
            f"{reference[i]:.10g} ({ref.name}), |difference| {abs(got[i] - reference[i]):.3g} > tolerance "
            f"{tolerance[i]:.3g}"
        )


def assert_lipschitz_bound(model: Any, x: Any, *, bound: float, params: Params = None,
                           direction: str = "forward", radius: float = 1e-2, directions: int = 8,
                           seed: int = 0) -> None:
    """Assert that no Lipschitz quotient ||F(a) - F(b)|| / ||a - b|| exceeds ``bound``, over
    pairs (a, b) with a a row of ``x`` and b = a + radius v for ``directions`` random unit v.

    Quotients are computed at the widest precision available (mpmath for blocks and ctx-aware
    functions, else longdouble) and compared with ``bound`` plus their own rounding error,
    so a failure means the claimed bound is wrong (a quotient is a *lower* bound of Lip).
    ``direction="inverse"`` checks F^-1 (pass ``model=inverse`` for your own functions).
    """
    if not (bound >= 0) or not (radius > 0) or directions < 1:
        raise LipflowError("assert_lipschitz_bound needs bound >= 0, radius > 0 and directions >= 1")
    if direction not in ("forward", "inverse"):
        raise LipflowError(f"direction must be 'forward' or 'inverse', got {direction!r}")
    if isinstance(model, Block) and direction == "inverse":
        block = model
        maps = _Maps(lambda y, ctx: block.inverse(params, y, ctx=ctx), None, None, True, None)
    else:
        maps = _maps(model, params, None, None, "assert_lipschitz_bound")
    x64 = onp.asarray(x, dtype=onp.float64)
    if x64.ndim != 2:
        raise LipflowError(f"x must have shape (n, dim), got {x64.shape}")
    rng = onp.random.default_rng(seed)
    v = rng.standard_normal((directions, x64.shape[1]))
    v /= onp.linalg.norm(v, axis=1, keepdims=True)
    a = onp.repeat(x64, directions, axis=0)
    b = a + radius * onp.tile(v, (len(x64), 1))
    ref = precision("mp40") if maps.mp_capable else precision("longdouble")
    fa, fb = (onp.asarray(maps.forward(_lift(p, ref), ref)) for p in (a, b))
    carrier = precision("mp40")
    diff = _norm_rows(carrier.to_float64(to_mp(fa, carrier) - to_mp(fb, carrier)))
    step = _norm_rows(carrier.to_float64(to_mp(a, carrier) - to_mp(b, carrier)))
    size = _norm_rows(carrier.to_float64(to_mp(fa, carrier))) + _norm_rows(carrier.to_float64(to_mp(fb, carrier)))
    quotient = diff / step
    rounding = 8 * ref.unit_roundoff * math.sqrt(x64.shape[1]) * size / step
    bad = onp.flatnonzero(~(quotient <= bound + rounding))
    if bad.size:
        i = int(onp.argmax(quotient))
        raise AssertionError(
            f"Lipschitz bound {bound:g} ({direction}) is exceeded: at a={_fmt(a[i])}, b={_fmt(b[i])} the "
            f"quotient ||F(a) - F(b)|| / ||a - b|| = {quotient[i]:.10g} (> bound + rounding {rounding[i]:.3g}; "
            f"{bad.size} of {len(a)} pairs)"
        )
