"""``lipflow advise SAVED_FLOW --tol 1e-3``: the cheapest per-block precision plan that meets a
tolerance, proven on a box or measured on data; writes the plan (JSON), a table and a figure.

Examples::

    lipflow advise model --tol 1e-3 --box -1 1 --out advice/
    lipflow advise model --tol 1e-3 --data x.npy --mode measured --precisions bfloat16 float32 float64
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as onp

from lipflow.errors import LipflowError

__all__ = ["register", "run_advise"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "advise",
        help="cheapest per-block precisions (a plan) whose error stays within --tol",
        description="Find the cheapest mixed-precision plan (one precision per block, forward and inverse) of a "
        "saved flow whose error is at most --tol: proven by an a priori rounding bound on --box, or measured "
        "against ground truth on --data plus out-of-distribution and dequantisation-box attack inputs. The plan "
        "is run and validated; the plan (JSON), a table and a figure are written to --out.",
        epilog="example: lipflow advise model --tol 1e-3 --box -1 1 --out advice/",
    )
    parser.add_argument("model", metavar="SAVED_FLOW",
                        help="a flow saved with lipflow.save_flow (PATH.json + PATH.npz)")
    parser.add_argument("--tol", type=float, required=True, help="error tolerance (l2 per sample)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--box", nargs=2, type=float, metavar=("LO", "HI"), help="the cube [LO, HI]^dim of inputs")
    where.add_argument("--data", metavar="X.npy", help="samples, an (n, dim) float array in a .npy file")
    parser.add_argument("--target", choices=("reconstruction", "forward", "inverse", "logdet"),
                        default="reconstruction", help="which error to bound (default reconstruction)")
    parser.add_argument("--mode", choices=("proven", "measured"), default="proven",
                        help="proven: a priori bound on the box (default); measured: ground truth on the data")
    parser.add_argument("--precisions", nargs="+", default=["bfloat16", "float16", "float32", "float64"],
                        help="candidate precisions (default bfloat16 float16 float32 float64; strict variants "
                        "float16-strict bfloat16-strict)")
    parser.add_argument("--cost", choices=("bytes", "time"), default="bytes",
                        help="cost model: bytes moved (default) or measured NumPy time per block")
    parser.add_argument("--out", metavar="DIR", default=None, help="write plan.json, plan.txt and plan.png here")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled validation inputs (default 0)")
    parser.set_defaults(handler=run_advise)


def _load_data(path: str) -> onp.ndarray:
    file = Path(path)
    if not file.is_file():
        raise LipflowError(f"--data {path}: no such file; save samples with numpy.save('x.npy', x)")
    try:
        x = onp.load(file, allow_pickle=False)
    except ValueError as error:
        raise LipflowError(f"--data {path}: cannot read a float array without pickle: {error}") from None
    if x.ndim != 2 or not onp.issubdtype(x.dtype, onp.floating):
        raise LipflowError(f"--data {path}: need a float array of shape (n, dim), got {x.dtype} {x.shape}")
    return x.astype(onp.float64)


def run_advise(args: argparse.Namespace) -> int:
    from lipflow.analysis.advise_report import plot_advice
    from lipflow.analysis.advisor import advise
    from lipflow.blocks.plan import save_plan
    from lipflow.blocks.serialise import load_flow
    from lipflow.io import atomic_savefig, atomic_write_text

    flow, params = load_flow(args.model)
    x = _load_data(args.data) if args.data else None
    box = tuple(args.box) if args.box else None
    if box is None and x is None:
        raise LipflowError("give the inputs: --box LO HI (the cube of inputs) or --data x.npy")
    advice = advise(flow, params, x=x, box=box, tol=args.tol, target=args.target, mode=args.mode,
                    precisions=tuple(args.precisions), cost=args.cost, seed=args.seed)
    text = advice.summary() + "\n\n" + advice.table()
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = Path(args.model).with_suffix("").name
        written = save_plan(out / stem, advice.plan, flow, extra=advice.to_dict())
        atomic_write_text(out / "plan.txt", text + "\n")
        import matplotlib.pyplot as plt

        figure = plot_advice(advice)
        atomic_savefig(figure, out / "plan.png", dpi=120)
        plt.close(figure)
        print(f"\nwrote {written}, {out / 'plan.txt'}, {out / 'plan.png'}")
    return 0
