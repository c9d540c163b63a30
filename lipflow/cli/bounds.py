"""``lipflow bounds BLOCK [options]`` and ``lipflow bounds --model PATH``: print a Lipschitz bound,
its formula (text and LaTeX), its ingredients and, with ``--estimate``, an empirical lower bound.

Examples::

    lipflow bounds affine --scale sigmoid --box -4 4 --direction inverse --width 16 --seed 0
    lipflow bounds additive --width 32 --estimate
    lipflow bounds residual --coeff 0.9 --direction both
    lipflow bounds --model saved/flow.json --box -4 4 --direction inverse
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from lipflow.errors import LipflowError

__all__ = ["build_block", "register", "run_bounds_command"]

BLOCKS = ("additive", "affine", "residual", "linear", "actnorm", "permutation")
SCALES = ("sigmoid", "exp", "bounded", "softclamp")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bounds",
        help="rigorous Lipschitz bound of a block or saved flow (formula, value, empirical check)",
        description="Print a rigorous upper bound on Lip(F) or Lip(F^-1) of a block described by the "
        "options (random parameters from --seed) or of a flow saved with lipflow.blocks.serialise."
        "save_flow, with the formula in text and LaTeX, its ingredients and the theory label.",
        epilog="example: lipflow bounds affine --scale sigmoid --box -4 4 --direction inverse --width 16",
    )
    parser.add_argument("block", nargs="?", choices=BLOCKS, help="block family (omit with --model)")
    parser.add_argument("--model", metavar="PATH", help="a saved block or flow (PATH.json + PATH.npz)")
    parser.add_argument("--dim", type=int, default=2, help="dimension (default 2)")
    parser.add_argument("--width", type=int, default=16, help="hidden width of the conditioner MLPs (default 16)")
    parser.add_argument("--depth", type=int, default=1, help="number of hidden layers (default 1)")
    parser.add_argument("--activation", default=None, help="MLP activation (default tanh; residual lipswish)")
    parser.add_argument("--scale", choices=SCALES, default="sigmoid", help="affine scale g (default sigmoid)")
    parser.add_argument("--shift", type=float, default=0.0, help="sigmoid/bounded shift: g(s + shift)")
    parser.add_argument("--bias", type=float, default=0.0, help="sigmoid additive bias (g > bias)")
    parser.add_argument("--low", type=float, default=0.5, help="bounded scale lower limit (default 0.5)")
    parser.add_argument("--high", type=float, default=1.0, help="bounded scale upper limit (default 1)")
    parser.add_argument("--clamp", type=float, default=2.0, help="soft-clamp constant (default 2)")
    parser.add_argument("--form", choices=("realnvp", "glow"), default="realnvp", help="affine form")
    parser.add_argument("--coeff", type=float, default=0.9, help="residual spectral coefficient (default 0.9)")
    parser.add_argument("--box", nargs=2, type=float, metavar=("LOW", "HIGH"), default=None,
                        help="the cube [LOW, HIGH]^dim in the domain of the map bounded (inputs for "
                        "forward, outputs for inverse); needed for affine couplings")
    parser.add_argument("--direction", choices=("forward", "inverse", "both"), default="forward")
    parser.add_argument("--variant", choices=("tight", "simple"), default="tight",
                        help="coupling bound: tight triangular norm (default) or max(1, delta) + b")
    parser.add_argument("--splits", type=int, default=16,
                        help="sub-boxes of the conditioning box for affine couplings (default 16; more is "
                        "tighter and slower)")
    parser.add_argument("--seed", type=int, default=0, help="parameter seed (default 0)")
    parser.add_argument("--estimate", action="store_true", help="also compute an empirical lower bound")
    parser.add_argument("--samples", type=int, default=256, help="sample points of --estimate (default 256)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=run_bounds_command)


def build_block(args: argparse.Namespace) -> tuple[Any, Any]:
    """The block and its seeded parameters described by the command-line options."""
    import lipflow

    if args.dim < 1 or args.width < 1 or args.depth < 0:
        raise LipflowError("--dim and --width must be positive and --depth non-negative")
    hidden = (args.width,) * args.depth
    if args.block == "residual":
        block = lipflow.Residual(args.dim, hidden=hidden, activation=args.activation or "lipswish", coeff=args.coeff)
    elif args.block in ("additive", "affine"):
        mlp = lipflow.MLP(hidden=hidden, activation=args.activation or "tanh")
        if args.block == "additive":
            block = lipflow.AdditiveCoupling(args.dim, t=mlp)
        else:
            scale = {
                "sigmoid": lambda: lipflow.Sigmoid(shift=args.shift, bias=args.bias),
                "exp": lipflow.Exp,
                "bounded": lambda: lipflow.Bounded(args.low, args.high, shift=args.shift),
                "softclamp": lambda: lipflow.SoftClamp(args.clamp),
            }[args.scale]()
            block = lipflow.AffineCoupling(args.dim, t=mlp, s=mlp, scale=scale, form=args.form)
    elif args.block == "linear":
        block = lipflow.InvertibleLinear(args.dim, seed=args.seed)
    elif args.block == "actnorm":
        block = lipflow.ActNorm(args.dim)
    else:
        block = lipflow.Permutation(args.dim, seed=args.seed)
    return block, block.init(args.seed)


def run_bounds_command(args: argparse.Namespace) -> int:
    from lipflow.bounds import estimate, lipschitz

    if args.model and args.block:
        raise LipflowError("give either a block family or --model PATH, not both")
    if args.model:
        from lipflow.blocks.serialise import load_flow

        block, params = load_flow(args.model)
    elif args.block:
        block, params = build_block(args)
    else:
        raise LipflowError(f"name a block family ({', '.join(BLOCKS)}) or pass --model PATH")
    box = None if args.box is None else (args.box[0], args.box[1])
    directions = ("forward", "inverse") if args.direction == "both" else (args.direction,)
    reports: list[dict[str, Any]] = []
    for direction in directions:
        try:
            bound = lipschitz(block, params, direction=direction, box=box, variant=args.variant, splits=args.splits)
        except LipflowError as error:
            if box is None and "box" in str(error):
                raise LipflowError(f"{error} On the command line: --box LOW HIGH.") from None
            raise
        entry: dict[str, Any] = {"bound": bound.as_dict()}
        text = [bound.summary()]
        if args.estimate:
            lower = estimate(block, params, direction=direction, box=box, n_samples=args.samples, seed=args.seed)
            ratio = bound.value / lower.value if lower.value > 0 else float("inf")
            entry["estimate"] = lower.as_dict()
            entry["ratio_upper_over_lower"] = ratio
            text.append(f"  empirical lower bound: {lower.value:.17g} (sampling + local optimisation, "
                        f"{lower.label}); upper / lower = {ratio:.4g}")
        reports.append(entry)
        if not args.json:
            print("\n".join(text))
    if args.json:
        print(json.dumps(reports if len(reports) > 1 else reports[0], indent=2))
    return 0
