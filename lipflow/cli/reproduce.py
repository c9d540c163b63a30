"""``lipflow reproduce NAME``: run one of the paper's experiments."""

from __future__ import annotations

import argparse

from lipflow.experiments import available_experiments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reproduce",
        help="reproduce one of the paper's experiments (tables and figures into --out)",
        description="Reproduce one of the paper's experiments. Results go to --out as CSV and PNG.",
    )
    experiments = parser.add_subparsers(dest="experiment", metavar="NAME")
    for name, module in available_experiments().items():
        text = module.DESCRIPTION.replace("%", "%%")  # argparse formats help with %
        sub = experiments.add_parser(name, help=text, description=text)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    parser.set_defaults(handler=lambda args: _missing_experiment(parser))


def _missing_experiment(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2
