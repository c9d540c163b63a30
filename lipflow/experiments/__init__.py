"""The paper's experiments as functions; ``lipflow reproduce NAME`` runs them.

Each experiment module provides ``DESCRIPTION`` (one line), ``add_arguments(parser)`` and
``run(args) -> int`` (the exit status); the CLI discovers them through :data:`EXPERIMENTS`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: experiment name -> module implementing it
EXPERIMENTS: dict[str, str] = {
    "fig1": "lipflow.experiments.fig1",
    "checkerboard": "lipflow.experiments.checkerboard",
    "regression2d": "lipflow.experiments.regression2d",
    "classifier": "lipflow.experiments.classifier",
    "attack": "lipflow.experiments.attack",
    "ood": "lipflow.experiments.ood",
    "iresnet": "lipflow.experiments.iresnet",
    "remedies": "lipflow.experiments.remedies",
}


def available_experiments() -> dict[str, ModuleType]:
    """The experiments whose modules are present, in :data:`EXPERIMENTS` order."""
    found = {}
    for name, module_name in EXPERIMENTS.items():
        try:
            found[name] = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
    return found
