"""Navigation conventions for mkdocs.yml: folders that list themselves, optional pages.

* ``"folder/"`` expands to every Markdown page under that folder: ``index.md`` first, then the
  others by file name. A folder with no pages is dropped, so a section appears as soon as its
  first page exists.
* ``"page.md?"`` names an optional page: kept while it exists, dropped (not an error) otherwise.

Every other entry is passed through unchanged, so a typo in a required page still fails the
strict build.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from mkdocs.structure.files import Files

__all__ = ["expand_nav", "folder_pages"]


def folder_pages(folder: str, files: Files, order: Sequence[str] = ()) -> list[str]:
    """The pages under ``folder`` (a docs-relative path ending in "/"): index first, then those
    listed in ``order`` in that order, then the rest by file name."""
    pages = [
        file.src_uri
        for file in files.documentation_pages()
        if file.src_uri.startswith(folder)
    ]

    rank = {src_uri: position for position, src_uri in enumerate(order)}

    def key(src_uri: str) -> tuple[int, int, str]:
        first = 0 if posixpath.basename(src_uri) == "index.md" else 1
        return (first, rank.get(src_uri, len(rank)), src_uri)

    return sorted(pages, key=key)


def _expand_value(value: Any, files: Files, orders: Mapping[str, Sequence[str]]) -> Any:
    """An expanded nav value, or None when the entry is to be dropped."""
    if isinstance(value, list):
        expanded = expand_nav(value, files, orders)
        return expanded or None
    if not isinstance(value, str):
        return value
    if value.endswith("/"):
        return folder_pages(value, files, orders.get(value, ())) or None
    if value.endswith("?"):
        page = value[:-1]
        return page if files.get_file_from_path(page) is not None else None
    return value


def expand_nav(nav: list[Any], files: Files, orders: Mapping[str, Sequence[str]] | None = None) -> list[Any]:
    """``nav`` with folder entries expanded and missing optional pages removed.

    ``orders`` maps a folder entry ("reference/") to the preferred order of its pages.
    """
    orders = orders or {}
    result: list[Any] = []
    for item in nav:
        if isinstance(item, dict):
            for title, value in item.items():
                expanded = _expand_value(value, files, orders)
                if expanded is not None:
                    result.append({title: expanded})
        else:
            expanded = _expand_value(item, files, orders)
            if isinstance(expanded, list):
                result.extend(expanded)
            elif expanded is not None:
                result.append(expanded)
    return result
