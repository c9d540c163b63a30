"""The API reference covers what the README and the theory pages point at.

Derived, never hard-coded: every module in the README's module table (and, for a package, its
public submodules) gets a reference page, and every ``computed by:`` target of ``theory/`` lands
on a heading of its module's page. The static checks need no MkDocs; the built-site checks live
in tests/test_docs_build.py (they need the docs extra).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "hooks"))

import docs_reference  # noqa: E402  (the hook's helpers, importable without MkDocs)
import docs_theory  # noqa: E402

MODULES = docs_reference.existing_modules(ROOT)
PAGES = docs_reference.api_pages(ROOT)


def computed_by_targets() -> list[str]:
    return sorted({name for page in docs_theory.read_theory(ROOT / "theory") for name in page.computed_by})


def test_the_readme_table_is_read():
    listed = docs_reference.readme_modules(ROOT)
    assert "lipflow.precision" in listed and "lipflow.experiments" in listed and len(listed) >= 8


@pytest.mark.parametrize("module", docs_reference.readme_modules(ROOT))
def test_every_module_the_readme_lists_has_a_reference_page(module):
    assert docs_reference._source_of(module, ROOT) is not None, f"the README lists {module}, which does not exist"
    assert module in MODULES, f"the README lists {module} but the API reference has no page for it"
    assert docs_reference.api_page_uri(module) in PAGES


@pytest.mark.parametrize("target", computed_by_targets())
def test_every_computed_by_target_lands_on_a_documented_function(target):
    module = docs_reference.defining_module(target, ROOT)
    assert module is not None, f"computed by: {target} names no module of lipflow"
    assert module in MODULES, f"computed by: {target} is in {module}, which the API reference does not document"
    link = docs_reference.api_link(target, "theory/page.md", MODULES, ROOT)
    assert link is not None and link.endswith("#" + target), (
        f"computed by: {target} links to {link!r}, not to the function's heading on {module}'s page "
        "(is it defined at the module's top level?)"
    )


def test_the_analysis_functions_the_readme_describes_are_documented():
    for target in ("lipflow.analysis.budget.error_budget", "lipflow.analysis.attribution",
                   "lipflow.analysis.reference", "lipflow.analysis.certify", "lipflow.experiments"):
        module = docs_reference.defining_module(target, ROOT)
        assert module in MODULES, target


@pytest.mark.parametrize("module", MODULES)
def test_module_summaries_are_whole_sentences_without_rst(module):
    summary = docs_reference.module_summary(module, ROOT)
    assert summary, f"{module} has no module docstring"
    assert not re.search(r":[a-z]+:`|``", summary), f"{module}: raw RST in the summary: {summary}"
    assert summary.endswith((".", "!", "?")), f"{module}: the summary is cut: {summary}"
    assert summary.count("`") % 2 == 0, f"{module}: unbalanced backticks: {summary}"
