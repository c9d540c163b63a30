"""``lipflow sweep SPEC.toml --out DIR``, ``lipflow sweep --resume DIR`` and ``lipflow report DIR``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lipflow.errors import LipflowError

__all__ = ["register", "run_report_command", "run_sweep_command"]

AXIS_FLAGS: dict[str, dict[str, Any]] = {
    "block": {"help": "additive, affine, residual"},
    "conditioner": {"help": "mlp (random, seeded) or toy (the Figure 1 constants)"},
    "scale": {"help": "affine scale g: sigmoid, exp, softclamp, bounded"},
    "inputs": {"help": "ones (Figure 1 point), normal, uniform, wide (N(0, 100 I))"},
    "seed": {"type": int, "help": "seeds (network and inputs)"},
    "precision": {"help": "float16, bfloat16, float32, float64, longdouble, mpNN"},
    "depth": {"help": "depths, e.g. 1 2 4 8 or 1:50 (inclusive)"},
}
SETTING_FLAGS: dict[str, dict[str, Any]] = {
    "name": {"help": "sweep name (titles and the 'sweep' column)"},
    "metrics": {"nargs": "+", "help": "metrics to record (see docs/sweeps.md)"},
    "reference": {"help": "reference precision: auto (default) or mpNN"},
    "dim": {"type": int, "help": "dimension of the flow (default 2)"},
    "samples": {"type": int, "help": "input points per cell (default 8; 'ones' is one point)"},
    "hidden": {"type": int, "nargs": "+", "help": "hidden widths of the MLPs (default 16)"},
    "activation": {"help": "MLP activation (default tanh)"},
    "coeff": {"type": float, "help": "residual spectral coefficient c in (0, 1) (default 0.9)"},
}


def register(subparsers: argparse._SubParsersAction) -> None:
    sweep = subparsers.add_parser(
        "sweep",
        help="run a precision sweep (resumable; tables and figures into --out)",
        description="Run a grid of cells (block x conditioner x scale x inputs x seed x precision x depth) "
        "from a TOML spec and/or flags. Finished cells are stored one by one in --out; re-running the "
        "same spec, or `lipflow sweep --resume DIR`, computes only the missing ones.",
    )
    sweep.add_argument("spec", nargs="?", help="sweep spec (TOML); flags below override its keys")
    sweep.add_argument("--out", help="sweep folder (new or holding the same spec)")
    sweep.add_argument("--resume", metavar="DIR", help="continue the sweep saved in DIR with its own spec")
    axes = sweep.add_argument_group("axes (each takes one or more values; override the spec)")
    for name, options in AXIS_FLAGS.items():
        axes.add_argument(f"--{name}", nargs="+", default=None, metavar="VALUE", **options)
    settings = sweep.add_argument_group("settings (override the spec)")
    for name, options in SETTING_FLAGS.items():
        settings.add_argument(f"--{name}", default=None, **options)
    execution = sweep.add_argument_group("execution")
    execution.add_argument("--workers", type=int, default=None, help="processes (default: every available core)")
    execution.add_argument("--dask", metavar="ADDRESS", default=None,
                           help="run on a Dask scheduler (tcp://host:8786) or 'local' for a loopback "
                           "LocalCluster of --workers processes; needs lipflow[dask]")
    execution.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    execution.add_argument("--no-report", action="store_true", help="skip summary tables and figures")
    sweep.set_defaults(handler=run_sweep_command)

    report = subparsers.add_parser(
        "report",
        help="summary tables and figures of a sweep folder",
        description="Write results.csv, summary.csv, summary.md and figures/ (PNG and PDF) for a sweep folder; "
        "works on an unfinished sweep too.",
    )
    report.add_argument("folder", help="sweep folder (from `lipflow sweep ... --out DIR`)")
    report.add_argument("--heatmap", nargs=2, metavar=("X", "Y"), default=None,
                        help="the two axes of the heatmap (default: depth precision)")
    report.add_argument("--no-figures", action="store_true", help="tables only")
    report.set_defaults(handler=run_report_command)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {name: getattr(args, name) for name in (*AXIS_FLAGS, *SETTING_FLAGS)}
    return {name: value for name, value in values.items() if value is not None}


def _spec(args: argparse.Namespace) -> Any:
    from lipflow.sweep.spec import load_spec, spec_from_mapping

    overrides = _overrides(args)
    if args.resume:
        if args.spec or overrides or args.out:
            raise LipflowError(
                "--resume DIR continues the spec saved in DIR; do not pass a spec file, --out or axis/setting flags"
            )
        from lipflow.sweep.store import ResultStore

        return ResultStore.open_existing(args.resume).load_spec(), Path(args.resume)
    if not args.out:
        raise LipflowError("give an output folder with --out DIR (or continue one with --resume DIR)")
    if args.spec:
        return load_spec(args.spec, overrides), Path(args.out)
    from lipflow.sweep.spec import merge_overrides

    return spec_from_mapping(merge_overrides({}, overrides), source="flags"), Path(args.out)


def run_sweep_command(args: argparse.Namespace) -> int:
    from lipflow.sweep.runner import default_workers, run_sweep

    spec, out = _spec(args)
    if args.workers is not None and args.workers < 1:
        raise LipflowError(f"--workers must be at least 1, got {args.workers}")
    progress = not args.no_progress
    try:
        if args.dask:
            from lipflow.sweep.distributed import dask_client, iter_dask

            with dask_client(args.dask, workers=args.workers or default_workers()) as client:
                run = run_sweep(spec, out, progress=progress, engine=lambda cells, s: iter_dask(client, cells, s))
        else:
            run = run_sweep(spec, out, workers=args.workers, progress=progress)
    except KeyboardInterrupt:
        from lipflow.sweep.store import ResultStore

        try:
            done = len(ResultStore(out).finished(spec)) if (out / "spec.toml").exists() else 0
        except (LipflowError, OSError):
            done = 0
        print(f"interrupted: {done} of {len(spec.cells)} cells are stored; continue with "
              f"`lipflow sweep --resume {out}`", file=sys.stderr)
        raise
    print(f"{spec.name}: {run.total} cells ({run.computed} computed now, {run.skipped} already stored) "
          f"-> {run.store.results_path}")
    if not args.no_report:
        _print_written(_report(out, None, figures=True))
    return 0


def _report(folder: Path, heatmap: tuple[str, str] | None, *, figures: bool) -> list[Path]:
    from lipflow.sweep.report import write_report

    return write_report(folder, figures=figures, heatmap=heatmap)


def _print_written(paths: list[Path]) -> None:
    for path in paths:
        print(f"wrote {path}")


def run_report_command(args: argparse.Namespace) -> int:
    heatmap = tuple(args.heatmap) if args.heatmap else None
    paths = _report(Path(args.folder), heatmap, figures=not args.no_figures)
    _print_written(paths)
    summary = Path(args.folder) / "summary.md"
    if summary.is_file() and sys.stdout.isatty():
        print()
        print(summary.read_text(encoding="utf-8"))
    return 0
