"""The documentation's code runs: Markdown examples and the package's doctests.

Every ```python block of docs/**/*.md, theory/*.md and README.md is executed, page by page in
one namespace per page (a page reads like one session), in a temporary working folder. Blocks
whose lines start with ``>>>`` are run as doctests, their printed output checked. An HTML
comment on the line before a fence steers a block:

* ``<!-- docs-test: skip -->``: shown, never run (say why in the text around it);
* ``<!-- docs-test: requires MODULE[, MODULE] -->``: skipped, with the reason, while a module
  is not installed (an optional extra such as torch);
* ``<!-- docs-test: output -->`` before a ```text block: the block must equal what the python
  block before it printed.

A block that fails because a third-party package is not installed (``ModuleNotFoundError`` for
anything but lipflow) skips itself and the rest of its page, with the reason, so pages about
optional extras (torch, pandas) run where the extra is installed and skip elsewhere.

The doctests of every ``lipflow`` module that has them run too; a module whose optional
dependency is missing is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import importlib.util
import io
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON_LANGUAGES = ("python", "py", "pycon")

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<what>[a-z]+)\s*(?P<argument>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class CodeBlock:
    """One fenced block of a Markdown page."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    directive: str  # "", "skip", "requires" or "output"
    argument: str


def markdown_blocks(path: Path) -> list[CodeBlock]:
    """The fenced code blocks of ``path``, with the docs-test directive just before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        fence, indent = opening.group("fence"), opening.group("indent")
        language = (opening.group("info").split() or [""])[0].strip("{}.").lower()
        body, end = [], index + 1
        while end < len(lines) and not re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[end]):
            body.append(lines[end][len(indent):] if lines[end].startswith(indent) else lines[end].lstrip())
            end += 1
        previous = index - 1
        while previous >= 0 and not lines[previous].strip():
            previous -= 1
        directive = _DIRECTIVE.match(lines[previous]) if previous >= 0 else None
        blocks.append(
            CodeBlock(
                path=path,
                line=index + 1,
                language=language,
                code=textwrap.dedent("\n".join(body)) + "\n",
                directive=directive.group("what") if directive else "",
                argument=directive.group("argument") if directive else "",
            )
        )
        index = end + 1
    return blocks


def documentation_pages() -> list[Path]:
    """Pages with at least one python block: docs (not its hooks), theory/ and the README."""
    candidates = [
        *sorted(p for p in (ROOT / "docs").rglob("*.md") if "hooks" not in p.relative_to(ROOT / "docs").parts),
        *sorted((ROOT / "theory").glob("*.md")),
        ROOT / "README.md",
    ]
    return [
        path
        for path in candidates
        if path.is_file() and any(b.language in PYTHON_LANGUAGES for b in markdown_blocks(path))
    ]


def _missing_modules(argument: str) -> list[str]:
    missing = []
    for name in (part.strip() for part in argument.split(",") if part.strip()):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def _is_missing_extra(error: ModuleNotFoundError) -> bool:
    """True when a third-party package (not lipflow itself) is simply not installed."""
    top = (error.name or "").split(".")[0]
    return bool(top) and top != "lipflow" and importlib.util.find_spec(top) is None


def _run_doctest_block(block: CodeBlock, namespace: dict) -> None:
    parser, output = doctest.DocTestParser(), io.StringIO()
    name = f"{block.path.relative_to(ROOT)}:{block.line}"
    test = parser.get_doctest(block.code, namespace, name, str(block.path), block.line)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=output.write, clear_globs=False)
    if runner.failures:
        pytest.fail(f"doctest in {name} failed:\n{output.getvalue()}", pytrace=False)


def _run_page(path: Path) -> tuple[int, list[str]]:
    """Run the page's blocks in order; return how many ran and why the others were skipped."""
    namespace: dict = {"__name__": "__docs__"}
    skipped, printed, ran = [], None, 0
    for block in markdown_blocks(path):
        where = f"{path.relative_to(ROOT)}:{block.line}"
        if block.directive == "output":
            if printed is None:
                pytest.fail(f"{where}: an output block must follow a python block that ran", pytrace=False)
            expected = [line.rstrip() for line in block.code.strip("\n").splitlines()]
            actual = [line.rstrip() for line in printed.strip("\n").splitlines()]
            assert actual == expected, f"{where}: the example printed\n{printed}\nbut the page shows\n{block.code}"
            printed = None
            continue
        if block.language not in PYTHON_LANGUAGES:
            continue
        if block.directive == "skip":
            skipped.append(f"{where}: marked skip")
            printed = None
            continue
        if block.directive == "requires":
            missing = _missing_modules(block.argument)
            if missing:
                skipped.append(f"{where}: needs {', '.join(missing)}")
                printed = None
                continue
        ran += 1
        if block.code.lstrip().startswith(">>>"):
            _run_doctest_block(block, namespace)
            printed = None
            continue
        stdout = io.StringIO()
        try:
            with contextlib.redirect_stdout(stdout):
                exec(compile(block.code, where, "exec"), namespace)
        except Exception as error:
            if isinstance(error, ModuleNotFoundError) and _is_missing_extra(error):
                # an optional dependency is not installed: this block and the rest of the page
                # (which builds on it) are skipped, with the reason
                skipped.append(f"{where} and the rest of the page: needs {error.name}, which is not installed")
                return ran - 1, skipped
            pytest.fail(
                f"the example at {where} raised {type(error).__name__}: {error}\n\n{block.code}", pytrace=False
            )
        printed = stdout.getvalue()
    return ran, skipped


@pytest.mark.parametrize("path", documentation_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_documentation_examples_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    try:
        ran, skipped = _run_page(path)
    finally:
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")
    if skipped and not ran:
        pytest.skip("; ".join(skipped))


# ---- the package's doctests -----------------------------------------------------------------


def doctest_modules() -> list[str]:
    """Modules of lipflow whose source contains a doctest prompt."""
    package = ROOT / "lipflow"
    modules = []
    for path in sorted(package.rglob("*.py")):
        if ">>>" not in path.read_text(encoding="utf-8"):
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


@pytest.mark.parametrize("module_name", doctest_modules())
def test_module_doctests(module_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and not error.name.startswith("lipflow"):
            pytest.skip(f"{module_name} needs {error.name}, which is not installed ({error})")
        raise
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    output = io.StringIO()
    tests = [t for t in finder.find(module, module_name) if t.examples]
    for test in tests:
        runner.run(test, out=output.write)
    if not tests:
        pytest.skip(f"{module_name} mentions '>>>' outside its docstrings; no doctest to run")
    assert runner.failures == 0, output.getvalue()
