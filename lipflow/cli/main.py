"""``lipflow``: the command-line entry point.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds an
argparse parser whose ``handler`` default runs it. A user's mistake (a :class:`LipflowError`)
is printed as one line, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import re
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
    _numbers_are_values(parser)
    return parser


#: what argparse must read as a (negative) number, not an option: -4, -1e3, -.5, -inf
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^-(inf|infinity)$", re.IGNORECASE)


def _numbers_are_values(parser: argparse.ArgumentParser) -> None:
    """Let every (sub)parser take ``--box -1e3 1e3``: argparse reads only -4 or -0.5 as numbers."""
    parser._negative_number_matcher = _NEGATIVE_NUMBER  # type: ignore[attr-defined]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _numbers_are_values(sub)


def _check_output_folders(args: argparse.Namespace) -> None:
    """Refuse an unusable output folder (a file, under a file, read-only) before any work."""
    from lipflow.io import check_output_folder

    for flag in ("out", "resume"):
        value = getattr(args, flag, None)
        if isinstance(value, str) and value:
            check_output_folder(value, f"--{flag}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        _check_output_folders(args)
        return int(args.handler(args) or 0)
    except LipflowError as error:
        print(f"lipflow {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as error:
        # a path the user gave cannot be used (checked early where possible; this is the backstop)
        print(f"lipflow {args.command}: error: {error.strerror}: {error.filename!r}; check the paths given",
              file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `lipflow bounds ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"lipflow {args.command}: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The ``lipflow`` command: :func:`main`, then exit with its status. After an interrupt
    (status 130) further Ctrl-C is ignored while the interpreter shuts down, where Python has
    already restored the default handler and a second press would kill the process mid-exit."""
    status = main()
    if status == 130:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(status)


if __name__ == "__main__":
    entry()
