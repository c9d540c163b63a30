"""MkDocs hook of the lipflow site: generated pages, navigation conventions, label links.

At build time it adds to the site (nothing generated is committed):

* ``theory/*.md`` from the repository's ``theory/`` folder, and a ``theory/index.md`` table;
* ``cli.md`` from ``lipflow.cli.main.build_parser()``;
* ``reference/*.md``, one mkdocstrings page per public module that exists;
* ``generated/fig1.png`` and the front page's error table, computed by the Figure 1 experiment;
* MathJax, so math renders offline.

It then expands the navigation conventions of mkdocs.yml (see ``docs_nav``) and links inline
code that names a theory label to the label's page.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any

import docs_assets
import docs_nav
import docs_reference
import docs_theory
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.lipflow")

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # document (and run) this checkout's lipflow, installed or not
    sys.path.insert(0, str(ROOT))
FIG1_TABLE_MARKER = "<!-- lipflow:fig1-summary -->"
FIG1_PICTURE = "generated/fig1.png"
#: ``<!-- lipflow:readme NAME -->`` is replaced by the README's command block after ``<!-- NAME -->``
README_MARKER = re.compile(r"<!-- lipflow:readme ([a-z0-9-]+) -->")

_state: dict[str, Any] = {"label_urls": {}, "fig1_table": "", "theory_order": []}


def _add(files: Files, config: MkDocsConfig, src_uri: str, **content: Any) -> None:
    existing = files.get_file_from_path(src_uri)
    if existing is not None:
        if existing.generated_by is None:
            log.info("lipflow: docs/%s exists, so it is used instead of the generated page", src_uri)
            return
        files.remove(existing)
    files.append(File.generated(config, src_uri, **content))


def _theory(files: Files, config: MkDocsConfig) -> None:
    pages = docs_theory.read_theory(ROOT / "theory")
    modules = docs_reference.existing_modules(ROOT)

    def api_link(name: str, from_src_uri: str) -> str | None:
        return docs_reference.api_link(name, from_src_uri, modules, ROOT)

    for page in pages:
        _add(files, config, page.src_uri, content=docs_theory.render_theory_page(page, api_link))
    own_index = [p for p in ("index.md", "README.md") if (ROOT / "theory" / p).is_file()]
    _state["theory_order"] = [page.src_uri for page in pages]
    if own_index:
        text = (ROOT / "theory" / own_index[0]).read_text(encoding="utf-8")
        _add(files, config, "theory/index.md", content=text)
        # the navigation follows the order in which theory's own index links its pages
        linked = [f"theory/{name}" for name in re.findall(r"\]\(([A-Za-z0-9_.-]+\.md)\)", text)]
        _state["theory_order"] = list(dict.fromkeys(linked))
    elif pages:
        _add(files, config, "theory/index.md", content=docs_theory.theory_index(pages))
    use_directory_urls = config.use_directory_urls
    _state["label_urls"] = {
        page.label: (page.src_uri[:-3] + "/" if use_directory_urls else page.src_uri[:-3] + ".html")
        for page in pages
        if page.label
    }


def on_files(files: Files, config: MkDocsConfig) -> Files:
    _theory(files, config)
    try:
        _add(files, config, "cli.md", content=docs_reference.cli_page())
    except Exception as error:  # the CLI page must build; say which part failed
        raise PluginError(f"lipflow docs: building the CLI reference failed: {error!r}") from error
    for src_uri, text in docs_reference.api_pages(ROOT).items():
        _add(files, config, src_uri, content=text)
    try:
        png, table = docs_assets.fig1_assets(ROOT / "lipflow")
    except Exception as error:
        raise PluginError(f"lipflow docs: running the Figure 1 experiment failed: {error!r}") from error
    _add(files, config, FIG1_PICTURE, content=png)
    _state["fig1_table"] = table
    try:
        vendored = docs_assets.mathjax_files()
    except FileNotFoundError as error:
        raise PluginError(str(error)) from error
    for src_uri, path in vendored.items():
        _add(files, config, src_uri, content=path.read_bytes())
    api_order = [docs_reference.api_page_uri(m) for m in docs_reference.existing_modules(ROOT)]
    orders = {"reference/": api_order, "theory/": _state["theory_order"]}
    config.nav = docs_nav.expand_nav(config.nav or [], files, orders)
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if FIG1_TABLE_MARKER in markdown:
        table = "```text\n" + _state["fig1_table"].rstrip() + "\n```"
        markdown = markdown.replace(FIG1_TABLE_MARKER, table)
    return README_MARKER.sub(lambda match: readme_block(match.group(1)), markdown)


def readme_block(marker: str) -> str:
    """The fenced block right after ``<!-- marker -->`` in README.md (the one source of truth)."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    try:
        start = lines.index(f"<!-- {marker} -->") + 1
        end = lines.index("```", start + 1)
    except ValueError:
        raise PluginError(f"lipflow docs: README.md has no fenced block after <!-- {marker} -->") from None
    return "\n".join(lines[start : end + 1])


def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    return docs_theory.link_labels(html, page.url, _state["label_urls"])
