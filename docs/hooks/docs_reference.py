"""Generated reference pages: the API (from docstrings) and the CLI (from the argparse parser).

API pages are written for the public modules that exist when the site is built: the curated
packages of :data:`API_MODULES`, every module the README's table lists and, for each of those
that is a package, its public submodules, and the module of every "computed by:" target of
``theory/`` (so each of those lands on a documented function). mkdocstrings reads the source
statically, so a module whose optional dependency (torch, hypothesis) is not installed is
still documented and never imported. The CLI page renders the help of every
parser reachable from ``lipflow.cli.main.build_parser()``, so it cannot drift from the code.
"""

from __future__ import annotations

import argparse
import ast
import os
import posixpath
import re
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "API_MODULES",
    "anchor_of",
    "api_link",
    "api_page_uri",
    "api_pages",
    "cli_page",
    "computed_by_targets",
    "defining_module",
    "existing_modules",
    "module_all",
    "module_summary",
    "readme_modules",
    "shadowed_exports",
]

#: public modules, in the order the reference lists them; absent ones are skipped
API_MODULES: tuple[str, ...] = (
    "lipflow",
    "lipflow.precision",
    "lipflow.blocks",
    "lipflow.analysis",
    "lipflow.bounds",
    "lipflow.strategies",
    "lipflow.testing",
    "lipflow.sweep",
    "lipflow.train",
    "lipflow.monitor",
    "lipflow.interop.torch",
    "lipflow.interop.adapters",
    "lipflow.errors",
)


def _source_of(module: str, root: Path) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


_README_ROW = re.compile(r"^\|\s*(?P<cell>`lipflow[^|]*)\|")
_CODE = re.compile(r"`(lipflow(?:\.[A-Za-z_][A-Za-z0-9_]*)*)`")
_COMPUTED_BY = re.compile(r"^computed by:\s*(.*)$", re.IGNORECASE | re.MULTILINE)


def readme_modules(root: Path) -> list[str]:
    """The modules named in the first column of the README's module table."""
    readme = root / "README.md"
    if not readme.is_file():
        return []
    names = []
    for line in readme.read_text(encoding="utf-8").splitlines():
        row = _README_ROW.match(line)
        if row:
            names += _CODE.findall(row.group("cell"))
    return list(dict.fromkeys(names))


def computed_by_targets(root: Path) -> list[str]:
    """Every dotted name on a ``computed by:`` line of ``theory/*.md``."""
    names = []
    for page in sorted((root / "theory").glob("*.md")):
        for line in _COMPUTED_BY.findall(page.read_text(encoding="utf-8")):
            names += _CODE.findall(line)
    return list(dict.fromkeys(names))


def defining_module(name: str, root: Path) -> str | None:
    """The longest prefix of dotted ``name`` that is a module with source under ``root``."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if _source_of(".".join(parts[:end]), root) is not None:
            return ".".join(parts[:end])
    return None


def _public_submodules(module: str, root: Path) -> list[str]:
    source = _source_of(module, root)
    if source is None or source.name != "__init__.py":
        return []
    found = []
    for path in sorted(source.parent.iterdir()):
        if path.name.startswith("_"):
            continue
        if path.suffix == ".py":
            found.append(f"{module}.{path.stem}")
        elif (path / "__init__.py").is_file():
            found += [f"{module}.{path.name}", *_public_submodules(f"{module}.{path.name}", root)]
    return found


def existing_modules(root: Path) -> list[str]:
    """Every module the reference documents, in order (see the module docstring)."""
    ordered = [module for module in API_MODULES if _source_of(module, root) is not None]
    for module in readme_modules(root):
        if _source_of(module, root) is not None:
            ordered += [module, *_public_submodules(module, root)]
    for target in computed_by_targets(root):
        module = defining_module(target, root)
        if module is not None:
            ordered.append(module)
    return list(dict.fromkeys(ordered))


def _defines(module: str, name: str, root: Path) -> bool:
    """Whether ``module``'s source defines or exports ``name`` at top level (so it has a heading)."""
    if name in module_all(module, root):
        return True
    source = _source_of(module, root)
    if source is None:
        return False
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
    return False


_ROLE = re.compile(r":(?:py:)?[a-z]+:`~?([^`]+)`")


def module_summary(module: str, root: Path) -> str:
    """The first sentence of a module's docstring as Markdown (RST roles and ````code```` made
    plain inline code), never cut inside a sentence."""
    source = _source_of(module, root)
    if source is None:
        return ""
    docstring = ast.get_docstring(ast.parse(source.read_text(encoding="utf-8"))) or ""
    paragraph = " ".join(docstring.strip().split("\n\n", 1)[0].split())
    paragraph = _ROLE.sub(lambda m: f"`{m.group(1).rsplit('.', 1)[-1] if m.group(0).count('~') else m.group(1)}`",
                          paragraph)
    paragraph = paragraph.replace("``", "`")
    # a sentence ends at . ! ? before a capital letter or the end ("paper Eqs. 3-4" goes on)
    sentence = re.match(r"(.+?[.!?])(?:\s+(?=[A-Z`*(])|$)", paragraph)
    return sentence.group(1) if sentence else paragraph


def module_all(module: str, root: Path) -> tuple[str, ...]:
    """The names in ``module.__all__``, read from the source without importing it."""
    source = _source_of(module, root)
    if source is None:
        return ()
    tree = ast.parse(source.read_text(encoding="utf-8"))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and node.value is not None:
            try:
                return tuple(str(name) for name in ast.literal_eval(node.value))
            except ValueError:
                return ()
    return ()


def api_page_uri(module: str) -> str:
    return f"reference/{module}.md"


def shadowed_exports(module: str, root: Path) -> tuple[str, ...]:
    """Exported names that are also submodules defining that name (``analysis.jacobian``).

    Static analysis sees the submodule under such a name, not the re-exported object, so the
    page renders these objects explicitly at ``module.name.name``.
    """
    source = _source_of(module, root)
    if source is None or source.name != "__init__.py":
        return ()
    result = []
    for name in module_all(module, root):
        submodule = source.parent / f"{name}.py"
        if not submodule.is_file():
            continue
        tree = ast.parse(submodule.read_text(encoding="utf-8"))
        defined = {
            node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))
        }
        if name in defined:
            result.append(name)
    return tuple(result)


def anchor_of(module: str, name: str, root: Path) -> str:
    """The heading id of ``module.name`` on the module's reference page."""
    if name in shadowed_exports(module, root):
        return f"{module}.{name}.{name}"
    return f"{module}.{name}"


def api_link(name: str, from_src_uri: str, modules: list[str], root: Path) -> str | None:
    """A relative link from page ``from_src_uri`` to where ``name`` (dotted) is documented.

    The deepest documented module that is a prefix of ``name`` gives the page; the anchor is
    added only when that module exports the object's short name in ``__all__`` (so the heading
    exists). None when no documented module covers ``name``.
    """
    covering = [m for m in modules if m != "lipflow" and (name == m or name.startswith(m + "."))]
    if not covering:
        return None
    module = max(covering, key=len)
    href = posixpath.relpath(api_page_uri(module), posixpath.dirname(from_src_uri) or ".")
    short = name.rsplit(".", 1)[-1]
    if name != module and name.count(".") == module.count(".") + 1 and _defines(module, short, root):
        href += "#" + anchor_of(module, short, root)
    return href


def _top_level_page(modules: list[str], root: Path) -> str:
    """The ``lipflow`` page: the package docstring and where each re-exported name lives."""
    lines = [
        "# lipflow",
        "",
        "::: lipflow",
        "    options:",
        "      members: false",
        "      show_root_heading: false",
        "",
        "## Public names",
        "",
        "`import lipflow` gives these names; each is documented in the module that defines it.",
        "",
        "| Name | Documented in |",
        "| --- | --- |",
    ]
    for name in module_all("lipflow", root):
        home = next((m for m in modules if m != "lipflow" and name in module_all(m, root)), None)
        if home is None or name.startswith("_"):
            lines.append(f"| `lipflow.{name}` | `lipflow` |")
        else:
            anchor = anchor_of(home, name, root)
            lines.append(f"| [`lipflow.{name}`]({home}.md#{anchor}) | `{home}` |")
    return "\n".join(lines) + "\n"


def api_pages(root: Path) -> dict[str, str]:
    """src_uri -> Markdown for the reference index and one page per existing module."""
    modules = existing_modules(root)
    pages = {}
    index = [
        "# API reference",
        "",
        "Generated from the docstrings of the public modules when the site is built.",
        "",
    ]
    for module in modules:
        summary = module_summary(module, root)
        depth = module.count(".") - 1 if module != "lipflow" else 0
        indent = "    " * max(0, min(depth, 1) if module.count(".") > 1 and _parent_listed(module, modules) else 0)
        index.append(f"{indent}- [`{module}`]({module}.md){': ' + summary if summary else ''}")
        if module == "lipflow":
            pages[api_page_uri(module)] = _top_level_page(modules, root)
        else:
            page = f"# `{module}`\n\n::: {module}\n    options:\n      show_root_heading: false\n"
            for name in shadowed_exports(module, root):
                page += f"\n::: {module}.{name}.{name}\n    options:\n      show_root_full_path: true\n"
            pages[api_page_uri(module)] = page
    pages["reference/index.md"] = "\n".join(index) + "\n"
    return pages


def _parent_listed(module: str, modules: list[str]) -> bool:
    return module.rsplit(".", 1)[0] in modules


def _walk(parser: argparse.ArgumentParser, depth: int) -> Iterator[tuple[int, argparse.ArgumentParser]]:
    yield depth, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _walk(sub, depth + 1)


def cli_page() -> str:
    """The CLI reference: every command's ``--help``, exactly as the installed parser prints it."""
    from lipflow.cli.main import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal width; fix it for the page
    try:
        parsers = list(_walk(build_parser(), 0))
        lines = [
            "# CLI reference",
            "",
            "The `lipflow` command, generated from its argparse parser when the site is built.",
            "A mistake in the arguments prints one line saying what is wrong, never a traceback;",
            "the exit status is 0 on success and 2 on a usage error.",
            "",
        ]
        for depth, parser in parsers:
            lines += [
                f"{'#' * min(depth + 2, 6)} `{parser.prog}`",
                "",
                "```text",
                parser.format_help().rstrip(),
                "```",
                "",
            ]
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(lines)
