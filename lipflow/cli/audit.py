"""``lipflow audit FILE.py:FUNCTION --data DATA.npy``: audit a user's trained torch flow.

``FUNCTION()`` builds the model (any flow lipflow's adapters accept: zuko, nflows, normflows,
FrEIA, lipflow modules, or a ``(forward, inverse)`` pair); ``--state-dict`` loads trained weights
(read with ``torch.load(weights_only=True)``: tensors only, never arbitrary pickles). Writes a
Markdown report, ``summary.json`` and figures to ``--out``, and exits 1 when ``--tol`` is
exceeded by the worst in-distribution reconstruction error (or any of those is Inf/NaN), so it
can gate a training pipeline. Mistakes (a missing file, a wrong function name) exit 2 with one line.

Example::

    lipflow audit flows.py:make_model --state-dict model.pt --data x_test.npy --out audit --tol 1e-4
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as onp

from lipflow.errors import LipflowError

__all__ = ["load_model", "register", "run_audit_command"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="audit a trained torch flow (zuko, nflows, normflows, FrEIA, ...) for numerical invertibility",
        description="Audit FILE.py:FUNCTION (a function returning the model) on --data: reconstruction errors, "
        "delta/delta2 against a float64 copy and a Newton reference, algorithmic inverse errors, per-sample "
        "condition numbers and first-order budgets, on data, rings, noise and the dequantisation-box search.",
        epilog="example: lipflow audit flows.py:make_model --state-dict model.pt --data x.npy --out audit --tol 1e-4",
    )
    parser.add_argument("target", metavar="FILE.py:FUNCTION", help="python file and the function that builds the model")
    parser.add_argument("--state-dict", metavar="PT", help="trained weights saved with torch.save(model.state_dict())")
    parser.add_argument("--data", metavar="NPY", required=True, help="data batch (n, ...) as .npy (or .npz with 'x')")
    parser.add_argument("--out", metavar="DIR", default="audit-report", help="output folder (default audit-report)")
    parser.add_argument("--tol", type=float, default=None,
                        help="exit 1 when the worst in-distribution reconstruction error exceeds this")
    parser.add_argument("--inputs", default="all", help="comma-separated input sets or 'all' (default all)")
    parser.add_argument("--radius", type=float, default=None, help="largest ring radius (default 4 max ||x||)")
    parser.add_argument("--box", type=float, default=None, help="dequantisation box half-width (default range/512)")
    parser.add_argument("--max-samples", type=int, default=256, help="data rows audited at most (default 256)")
    parser.add_argument("--dtype", choices=("float32", "float64", "float16", "bfloat16"), default=None,
                        help="working dtype (default: the parameters' majority)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise inputs and the box search")
    parser.set_defaults(handler=run_audit_command)


def load_model(target: str, state_dict: str | None = None) -> Any:
    """Call FUNCTION of FILE.py (``target`` = "FILE.py:FUNCTION") and load ``state_dict`` into it."""
    path_text, sep, name = target.rpartition(":")
    if not sep or not name or not path_text:
        raise LipflowError(f"target must look like path/to/file.py:make_model, got {target!r}")
    path = Path(path_text)
    if not path.is_file():
        raise LipflowError(f"model file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"lipflow_audit_user_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise LipflowError(f"cannot import {path} as a python file")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise LipflowError(f"importing {path} failed: {type(error).__name__}: {error}") from None
    finally:
        sys.path.pop(0)
    factory = getattr(module, name, None)
    if not callable(factory):
        raise LipflowError(f"{path} has no function {name!r}")
    try:
        model = factory()
    except Exception as error:
        raise LipflowError(f"{name}() raised {type(error).__name__}: {error}") from None
    if state_dict is not None:
        import torch

        if not hasattr(model, "load_state_dict"):
            raise LipflowError(f"{name}() returned a {type(model).__name__}, which takes no --state-dict")
        try:
            weights = torch.load(state_dict, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise LipflowError(f"state dict {state_dict} does not exist") from None
        except Exception as error:
            first = (str(error).strip().splitlines() or [""])[0]
            raise LipflowError(f"cannot read {state_dict} as a state dict of tensors (torch.save(model.state_dict()); "
                               f"read with weights_only=True): {type(error).__name__}: {first}") from None
        try:
            model.load_state_dict(weights)
        except Exception as error:
            first = (str(error).strip().splitlines() or [""])[0]
            raise LipflowError(f"{state_dict} does not fit the model {name}() builds: {first}") from None
    return model


def _load_data(path_text: str, limit: int) -> onp.ndarray:
    path = Path(path_text)
    if not path.is_file():
        raise LipflowError(f"data file {path} does not exist")
    try:
        data = onp.load(path, allow_pickle=False)
        if isinstance(data, onp.lib.npyio.NpzFile):
            if "x" not in data.files:
                raise LipflowError(f"{path} has no array 'x' (it has {', '.join(data.files)})")
            data = data["x"]
    except (ValueError, OSError) as error:
        raise LipflowError(f"cannot read {path} as .npy/.npz without pickles: {error}") from None
    if data.ndim < 2 or data.shape[0] < 1 or not onp.issubdtype(data.dtype, onp.number):
        raise LipflowError(f"data must be a numeric array of shape (n, ...) with n >= 1, got {data.dtype} {data.shape}")
    if limit < 1:
        raise LipflowError(f"--max-samples must be >= 1, got {limit}")
    return data[:limit]


def run_audit_command(args: argparse.Namespace) -> int:
    from lipflow.interop import require_torch

    torch = require_torch()
    from lipflow.interop.torch_audit_report import write_audit_report
    from lipflow.interop.torch_thirdparty import audit

    data = _load_data(args.data, args.max_samples)
    model = load_model(args.target, args.state_dict)
    inputs = "all" if args.inputs == "all" else tuple(k.strip() for k in args.inputs.split(",") if k.strip())
    dtype = getattr(torch, args.dtype) if args.dtype else None
    x = torch.as_tensor(onp.ascontiguousarray(data))
    if not x.is_floating_point():
        x = x.to(torch.float64)
    report = audit(model, x, dtype=dtype, inputs=inputs, radius=args.radius, box=args.box, seed=args.seed)
    summary = write_audit_report(report, args.out, tol=args.tol, title=args.target)
    ind = summary["in_distribution"]
    print(f"{report.library} model at {report.dtype}: {summary['n']} inputs in {report.seconds:.2f} s")
    print(f"forward: {report.direction_note}")
    print(f"worst in-distribution reconstruction error {ind['worst_error']:.3g} ({ind['nonfinite']} of {ind['n']} "
          f"Inf/NaN); algorithmic inverse errors at {summary['algorithmic_errors']['count']} of "
          f"{summary['algorithmic_errors']['decided']} inputs; beyond the first-order budget "
          f"{summary['beyond_budget']['count']} of {summary['beyond_budget']['decided']}")
    print(f"report: {Path(args.out) / 'report.md'}")
    if args.tol is not None and summary["tolerance"]["exceeded"]:
        print(f"tolerance {args.tol:g} exceeded", file=sys.stderr)
        return 1
    return 0
