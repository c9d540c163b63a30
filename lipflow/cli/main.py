"""``lipflow``: the command-line entry point.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds an
argparse parser whose ``handler`` default runs it. A user's mistake (a :class:`LipflowError`)
is printed as one line, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lipflow import __version__
from lipflow.errors import LipflowError

#: modules under lipflow.cli that provide subcommands, in help order
SUBCOMMAND_MODULES: tuple[str, ...] = ("reproduce", "bounds", "sweep", "audit", "advise")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lipflow",
        description="Numerical analysis of invertible neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"lipflow {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"lipflow.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"lipflow.cli.{name}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except LipflowError as error:
        print(f"lipflow {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `lipflow bounds ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"lipflow {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
