"""Drift test: every theory page names existing functions and tests, and every label cited in
the code or the tests has a page."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THEORY = ROOT / "theory"
LABEL = re.compile(r"\b(?:lem|thm|cor|prop|def):[a-z0-9]+(?:-[a-z0-9]+)*\b")
# placeholder labels used as fixtures by tests of the docs tooling, not citations of results
FIXTURE_LABELS = {"tests/test_docs_build.py": {"lem" + ":" + name for name in ("a", "b", "zz")}}
FIELD = re.compile(r"^(label|computed by|checked by):\s*(.+?)\s*$", re.MULTILINE)


def _pages() -> dict[Path, dict[str, list[str]]]:
    pages = {}
    for path in sorted(THEORY.glob("*.md")):
        if path.name == "README.md":
            continue
        fields: dict[str, list[str]] = {}
        for key, value in FIELD.findall(path.read_text()):
            fields.setdefault(key, []).extend(item.strip().strip("`") for item in value.split(",") if item.strip())
        pages[path] = fields
    return pages


PAGES = _pages()


def test_pages_exist_and_have_headers() -> None:
    assert len(PAGES) >= 20
    for path, fields in PAGES.items():
        assert path.read_text().startswith("# "), path.name
        assert len(fields.get("label", [])) == 1, f"{path.name}: exactly one label line"
        label = fields["label"][0]
        assert LABEL.fullmatch(label), f"{path.name}: malformed label {label!r}"
        assert path.stem == label.replace(":", "-"), f"{path.name} should be named {label.replace(':', '-')}.md"
        assert fields.get("computed by") and fields.get("checked by"), path.name


@pytest.mark.parametrize("path", sorted(PAGES), ids=lambda p: p.stem)
def test_computed_by_functions_import(path: Path) -> None:
    for dotted in PAGES[path]["computed by"]:
        module_name, _, attribute = dotted.rpartition(".")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, attribute, None)), f"{path.name}: {dotted} is not a callable"


def _test_names(test_file: Path) -> set[str]:
    tree = ast.parse(test_file.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


@pytest.mark.parametrize("path", sorted(PAGES), ids=lambda p: p.stem)
def test_checked_by_tests_exist(path: Path) -> None:
    for node in PAGES[path]["checked by"]:
        file_part, _, name = node.partition("::")
        test_file = ROOT / file_part
        assert test_file.is_file(), f"{path.name}: {file_part} does not exist"
        assert name.startswith("test_") and name in _test_names(test_file), f"{path.name}: no test {node}"


def test_cited_labels_have_pages() -> None:
    known = {fields["label"][0] for fields in PAGES.values()}
    cited: dict[str, set[str]] = {}
    for folder in ("lipflow", "tests", "docs", "examples", "theory"):
        for source in (ROOT / folder).rglob("*"):
            if source.suffix not in (".py", ".md") or not source.is_file():
                continue
            relative = str(source.relative_to(ROOT))
            for label in LABEL.findall(source.read_text(errors="replace")):
                if label not in FIXTURE_LABELS.get(relative, set()):
                    cited.setdefault(label, set()).add(relative)
    missing = {label: sorted(files) for label, files in cited.items() if label not in known}
    assert not missing, f"labels cited without a theory page: {missing}"


def test_readme_indexes_every_label() -> None:
    readme = (THEORY / "README.md").read_text()
    for path, fields in PAGES.items():
        assert fields["label"][0] in readme and path.name in readme, path.name
