"""The theory/ pages in the site: read in place, metadata rendered, labels linked.

Each ``theory/*.md`` (one lemma or theorem per page) starts with a title and the lines
``label:``, ``computed by:`` and ``checked by:``. The files stay where they are; the hook adds
them to the site as ``theory/<name>.md`` with the metadata lines turned into a box that links
the computing functions to the API reference. A generated ``theory/index.md`` tables every
page (unless theory/ has its own index.md). Anywhere in the site, inline code that is exactly a
known label (``lem:additive-tight``) becomes a link to its page.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TheoryPage", "link_labels", "read_theory", "render_theory_page", "theory_index"]

_META = re.compile(r"^(label|computed by|checked by):\s*(.*?)\s*$", re.IGNORECASE)
_CODE = re.compile(r"`([^`]+)`")
_LABEL_CODE = re.compile(r"<code>([a-z]+:[A-Za-z0-9_.-]+)</code>")


@dataclass(frozen=True)
class TheoryPage:
    """One theory file: where it lives, its title and its metadata."""

    path: Path
    src_uri: str
    title: str
    label: str
    computed_by: tuple[str, ...]
    checked_by: tuple[str, ...]
    body: str


def _parse(path: Path) -> TheoryPage:
    lines = path.read_text(encoding="utf-8").splitlines()
    title = path.stem
    meta: dict[str, str] = {}
    body_start = 0
    for index, line in enumerate(lines):
        if not meta and line.startswith("# "):
            title = line[2:].strip()
            body_start = index + 1
            continue
        match = _META.match(line)
        if match and index <= body_start + len(meta):
            meta[match.group(1).lower()] = match.group(2)
            body_start = index + 1
            continue
        if meta or line.strip():
            break
    label_codes = _CODE.findall(meta.get("label", ""))
    return TheoryPage(
        path=path,
        src_uri=f"theory/{path.name}",
        title=title,
        label=label_codes[0] if label_codes else meta.get("label", ""),
        computed_by=tuple(_CODE.findall(meta.get("computed by", ""))),
        checked_by=tuple(_CODE.findall(meta.get("checked by", ""))),
        body="\n".join(lines[body_start:]).strip("\n"),
    )


def read_theory(folder: Path) -> list[TheoryPage]:
    """Every ``*.md`` page of ``folder`` except index/README, sorted by file name."""
    if not folder.is_dir():
        return []
    skip = {"index.md", "readme.md"}
    return [_parse(path) for path in sorted(folder.glob("*.md")) if path.name.lower() not in skip]


def render_theory_page(page: TheoryPage, api_link: Callable[[str, str], str | None]) -> str:
    """The page's Markdown for the site: title, a metadata box, then the body unchanged.

    ``api_link(dotted_name, from_src_uri)`` gives a relative link to the API reference for a
    function, or None when no reference page documents it (then it stays plain code).
    """
    def code_item(name: str) -> str:
        link = api_link(name, page.src_uri)
        return f"[`{name}`]({link})" if link else f"`{name}`"

    lines = [f"# {page.title}", ""]
    if page.label:
        lines += [f'!!! abstract "`{page.label}`"', ""]
        if page.computed_by:
            lines.append("    **Computed by:** " + ", ".join(code_item(n) for n in page.computed_by) + "  ")
        if page.checked_by:
            lines.append("    **Checked by:** " + ", ".join(f"`{n}`" for n in page.checked_by))
        lines.append("")
    lines.append(page.body)
    return "\n".join(lines) + "\n"


def theory_index(pages: list[TheoryPage]) -> str:
    """A generated landing page: every label, its statement's title and where it is computed."""
    lines = [
        "# Theory",
        "",
        "Every bound lipflow computes is stated and proven on its own page, under a stable label",
        "that the code, the tests and these docs cite. Each page names the function that computes",
        "the bound and the tests that check it numerically. The pages are the Markdown files in",
        "the repository's `theory/` folder, rendered here as they are.",
        "",
        "| Label | Statement | Computed by |",
        "| --- | --- | --- |",
    ]
    for page in pages:
        computed = ", ".join(f"`{name}`" for name in page.computed_by) or "-"
        label = f"`{page.label}`" if page.label else "-"
        lines.append(f"| {label} | [{page.title}]({posixpath.basename(page.src_uri)}) | {computed} |")
    return "\n".join(lines) + "\n"


def link_labels(html: str, page_url: str, label_urls: dict[str, str]) -> str:
    """``<code>label</code>`` -> a link to the label's page (relative to ``page_url``).

    Only exact, known labels are linked, never the page's own label, and never code that is
    already inside a link.
    """
    here = posixpath.dirname(page_url)

    def replace(match: re.Match[str]) -> str:
        label = match.group(1)
        target = label_urls.get(label)
        if target is None or target == page_url:
            return match.group(0)
        before = html[: match.start()]
        if before.rfind("<a ") > before.rfind("</a>"):
            return match.group(0)
        href = posixpath.relpath(target, here or ".")
        return f'<a href="{href}">{match.group(0)}</a>'

    return _LABEL_CODE.sub(replace, html)
