"""Shared test configuration: Hypothesis profiles and a per-precision option.

Profiles: ``dev`` (fast, the default) and ``ci`` (thorough, derandomised), chosen with the
environment variable ``HYPOTHESIS_PROFILE``. ``--precision NAME`` (repeatable) restricts the
precision-parametrised tests to those precisions. Tests marked ``thorough`` (the strict site
build, the longest example runs) run under the ``ci`` profile (CI's second step) or with
``--thorough``, and skip with that reason in the default run, which stays near a minute.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

ALL_PRECISIONS = ("float16", "bfloat16", "float32", "float64", "longdouble", "mp50")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--precision",
        action="append",
        default=None,
        help=f"run precision-parametrised tests only at these precisions (of {', '.join(ALL_PRECISIONS)})",
    )
    parser.addoption(
        "--thorough",
        action="store_true",
        default=False,
        help="also run the tests marked thorough (on by default under HYPOTHESIS_PROFILE=ci)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("thorough") or os.environ.get("HYPOTHESIS_PROFILE") == "ci":
        return
    skip = pytest.mark.skip(reason="thorough check: runs with HYPOTHESIS_PROFILE=ci (CI's step b) or --thorough")
    for item in items:
        if "thorough" in item.keywords:
            item.add_marker(skip)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "precision_name" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("precision") or list(ALL_PRECISIONS)
        metafunc.parametrize("precision_name", chosen)
