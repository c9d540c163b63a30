"""Compiled (numba) triple-double kernels: the functions of :mod:`lipflow.precision.td_kernels`
flattened into one loop per operation and compiled with numba.

The kernels are not rewritten by hand. :func:`flatten` reads the source of ``td_kernels`` and
inlines every call of one kernel into a single straight-line loop body (locals renamed per call;
the selectors ``where``/``take``/``rint``/... become the scalar expressions ``a if c else b``,
``t[i]``, ``onp.rint(x)``, ...; ``two_prod`` becomes the FMA product, which returns Dekker's bits,
see :mod:`lipflow.precision.dd_numba`). The same IEEE operations in the same order give the
same bits as the NumPy kernels (``tests/test_triple_double.py`` checks it), and a loop without
calls or branches is vectorised by LLVM (SIMD lanes across elements). The generated source is
compiled under ``td_kernels``' file name, so numba's on-disk cache follows that file.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import inspect
import itertools
import math

import numba
import numpy as onp

from lipflow.precision import dd_numba, td_kernels

__all__ = ["binary", "dot", "flatten", "unary"]

_jit = numba.njit(cache=True, error_model="numpy", nogil=True)

#: the FMA product of the compiled kernels, in the style of td_kernels (Dekker's bits)
_TWO_PROD_FMA = """
def two_prod(a, b):
    p = a * b
    ah, al = split(a)
    bh, bl = split(b)
    dekker = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    exact = (abs(a) < _SAFE_HI) & (abs(b) < _SAFE_HI) & (_SAFE_LO < abs(p)) & (abs(p) < _SAFE_HI)
    return p, where(exact, _fma(a, b, -p), dekker)
"""

_SELECTORS = {
    "where": lambda c, a, b: ast.IfExp(test=c, body=a, orelse=b),
    "take": lambda t, i: ast.Subscript(value=t, slice=i, ctx=ast.Load()),
    "to_int": lambda x: _call("int", x),
    "rint": lambda x: _call("onp.rint", x),
    "floor": lambda x: _call("onp.floor", x),
    "isfinite": lambda x: _call("math.isfinite", x),
    "isnan": lambda x: _call("math.isnan", x),
    "pow2": lambda k: ast.Subscript(value=ast.Name("_POW2", ast.Load()),
                                    slice=ast.BinOp(k, ast.Add(), ast.Constant(_POW2_BIAS)), ctx=ast.Load()),
}
_POW2_BIAS = 1100
_POW2 = onp.ldexp(1.0, onp.arange(-_POW2_BIAS, _POW2_BIAS + 1).clip(-1074, 1023))


def _call(name: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=ast.parse(name, mode="eval").body, args=list(args), keywords=[])


def _functions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(inspect.getsource(td_kernels))
    found = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    found["two_prod"] = ast.parse(_TWO_PROD_FMA).body[0]
    return found


class _Inliner:
    """Inline calls of kernels into straight-line statements."""

    def __init__(self) -> None:
        self.functions = _functions()
        self.counter = itertools.count()

    def _rewrite(self, node: ast.expr, names: dict[str, str]) -> ast.expr:
        functions = self.functions

        class Rewrite(ast.NodeTransformer):
            def visit_Name(self, name: ast.Name) -> ast.AST:
                return ast.Name(names.get(name.id, name.id), name.ctx)

            def visit_Call(self, call: ast.Call) -> ast.AST:
                call = self.generic_visit(call)
                callee = call.func.id if isinstance(call.func, ast.Name) else None
                if callee in _SELECTORS:
                    return _SELECTORS[callee](*call.args)
                if callee in functions:
                    raise ValueError(f"a kernel call nested in an expression cannot be flattened: {callee}")
                return call

        return Rewrite().visit(copy.deepcopy(node))

    def _kernel_call(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in self.functions \
                and node.func.id not in _SELECTORS:
            return node.func.id
        return None

    def inline(self, name: str, args: list[ast.expr]) -> tuple[list[ast.stmt], ast.expr]:
        """Statements computing kernel ``name`` of ``args`` and the expression of its result."""
        function = self.functions[name]
        suffix = f"_{next(self.counter)}"
        params = [a.arg for a in function.args.args]
        local = set(params)
        for node in ast.walk(function):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                local.add(node.id)
        names = {n: n + suffix for n in local}
        out: list[ast.stmt] = [
            ast.Assign(targets=[ast.Name(names[p], ast.Store())], value=arg)
            for p, arg in zip(params, args, strict=True)
        ]
        body = function.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        for statement in body:
            if isinstance(statement, ast.Assign):
                value = self._flatten_value(statement.value, names, out)
                targets = [self._rewrite(t, names) for t in statement.targets]
                out.append(ast.Assign(targets=targets, value=value))
            elif isinstance(statement, ast.Return):
                return out, self._flatten_value(statement.value, names, out)
            else:
                raise ValueError(f"{name}: only assignments and a final return can be flattened")
        raise ValueError(f"{name} has no return")

    def _flatten_value(self, value: ast.expr, names: dict[str, str], out: list[ast.stmt]) -> ast.expr:
        callee = self._kernel_call(value)
        if callee is None:
            return self._rewrite(value, names)
        args = [self._rewrite(a, names) for a in value.args]
        statements, result = self.inline(callee, args)
        out.extend(statements)
        return result


def flatten(name: str, arguments: list[str], indent: str = "        ") -> tuple[str, str]:
    """(statements, result expression) of kernel ``name`` applied to the source expressions
    ``arguments``, every kernel call inlined."""
    statements, result = _Inliner().inline(name, [ast.parse(a, mode="eval").body for a in arguments])
    body = "\n".join(indent + ast.unparse(ast.fix_missing_locations(s)) for s in statements)
    return body, ast.unparse(ast.fix_missing_locations(result))


def _namespace() -> dict[str, object]:
    namespace = {k: v for k, v in vars(td_kernels).items() if not callable(v) or isinstance(v, onp.ndarray)}
    namespace.update(onp=onp, math=math, _fma=dd_numba._fma, _SAFE_HI=dd_numba._SAFE_HI,
                     _SAFE_LO=dd_numba._SAFE_LO, _POW2=_POW2, __name__=__name__)
    return namespace


def _compile(source: str, name: str) -> object:
    """Compile generated source under td_kernels' file name (numba caches it beside that file).

    The function's name carries a hash of its source, so a changed generator (or a changed
    ``td_kernels``) never loads a stale cache entry."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    unique = f"{name}_{digest}"
    namespace = _namespace()
    code = compile(source.replace(f"def {name}(", f"def {unique}(", 1), td_kernels.__file__, "exec")
    exec(code, namespace)  # our own generated code
    return _jit(namespace[unique])


def _unary_loop(kernel: str) -> object:
    body, result = flatten(kernel, ["x0[i]", "x1[i]", "x2[i]"])
    source = (f"def _flat_{kernel}_loop(x0, x1, x2, o0, o1, o2):\n    for i in range(x0.size):\n{body}\n"
              f"        o0[i], o1[i], o2[i] = {result}\n")
    return _compile(source, f"_flat_{kernel}_loop")


def _binary_loop(kernel: str) -> object:
    args = ["a0[i]", "a1[i]", "a2[i]", "b0[i]", "b1[i]", "b2[i]"]
    body, result = flatten(kernel, args)
    source = (f"def _flat_{kernel}_loop(a0, a1, a2, b0, b1, b2, o0, o1, o2):\n    for i in range(a0.size):\n"
              f"{body}\n        o0[i], o1[i], o2[i] = {result}\n")
    return _compile(source, f"_flat_{kernel}_loop")


def _dot_loop() -> object:
    """a (n, k) @ b (k, m) with a given transposed (k, n): for each output column, the products
    of one j are added into all n rows in an inner loop over rows (independent accumulators, so
    LLVM vectorises it); each output sees the operations of ``td_kernels.dot`` in its order."""
    first, first_result = flatten("mul", ["t0[0, r]", "t1[0, r]", "t2[0, r]", "b0[0, c]", "b1[0, c]", "b2[0, c]"],
                                  indent="            ")
    term, term_result = flatten("mul", ["t0[j, r]", "t1[j, r]", "t2[j, r]", "b0[j, c]", "b1[j, c]", "b2[j, c]"],
                                indent="                ")
    total, total_result = flatten("add", ["s0[r]", "s1[r]", "s2[r]", "p0", "p1", "p2"], indent="                ")
    done, done_result = flatten("finish", ["s0[r]", "s1[r]", "s2[r]", "s0[r]"], indent="            ")
    source = (
        "def _flat_dot_loop(t0, t1, t2, b0, b1, b2, o0, o1, o2, s0, s1, s2):\n"
        "    depth, n = t0.shape\n"
        "    m = b0.shape[1]\n"
        "    for c in range(m):\n"
        "        for r in range(n):\n"
        f"{first}\n            s0[r], s1[r], s2[r] = {first_result}\n"
        "        for j in range(1, depth):\n"
        "            for r in range(n):\n"
        f"{term}\n                p0, p1, p2 = {term_result}\n"
        f"{total}\n                s0[r], s1[r], s2[r] = {total_result}\n"
        "        for r in range(n):\n"
        f"{done}\n            o0[r, c], o1[r, c], o2[r, c] = {done_result}\n"
    )
    return _compile(source, "_flat_dot_loop")


_LOOPS: dict[str, object] = {}


def _loop(key: str) -> object:
    """The compiled loop for ``key``, generated on first use."""
    if key not in _LOOPS:
        if key == "dot":
            _LOOPS[key] = _dot_loop()
        elif key in ("add_checked", "mul_checked", "div_checked"):
            _LOOPS[key] = _binary_loop(key)
        else:
            _LOOPS[key] = _unary_loop(key)
    return _LOOPS[key]




def unary(name: str, parts: tuple[onp.ndarray, ...]) -> tuple[onp.ndarray, ...]:
    shape = onp.shape(parts[0])
    flat = [onp.ascontiguousarray(p, dtype=onp.float64).ravel() for p in parts]
    out = [onp.empty_like(flat[0]) for _ in range(3)]
    _loop(name)(*flat, *out)
    return tuple(o.reshape(shape) for o in out)


def binary(name: str, a: tuple[onp.ndarray, ...], b: tuple[onp.ndarray, ...]) -> tuple[onp.ndarray, ...]:
    parts = [onp.ascontiguousarray(p, dtype=onp.float64) for p in onp.broadcast_arrays(*a, *b)]
    shape = parts[0].shape
    out = [onp.empty(shape) for _ in range(3)]
    _loop(f"{name}_checked")(*(p.ravel() for p in parts), *(o.ravel() for o in out))
    return tuple(out)


def dot(a: tuple[onp.ndarray, ...], b: tuple[onp.ndarray, ...]) -> tuple[onp.ndarray, ...]:
    """a (n, k) @ b (k, m), the same operations in the same order as ``td_kernels.dot``."""
    transposed = [onp.ascontiguousarray(onp.asarray(p, dtype=onp.float64).T) for p in a]
    b = [onp.ascontiguousarray(p, dtype=onp.float64) for p in b]
    depth, n = transposed[0].shape
    m = b[0].shape[1]
    if depth == 0:
        return tuple(onp.zeros((n, m)) for _ in range(3))
    out = [onp.empty((n, m)) for _ in range(3)]
    scratch = [onp.empty(n) for _ in range(3)]
    _loop("dot")(*transposed, *b, *out, *scratch)
    return tuple(out)
