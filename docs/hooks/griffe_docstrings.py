"""Griffe extension: docstrings written for the terminal render cleanly as Markdown.

* Doctest sessions. A Google-style ``Example:`` section (indented examples) already renders as
  code. A ``>>>`` session written at the docstring's own indentation would otherwise be read as
  Markdown prose, where ``p["t"]["weights"]`` looks like a link reference. Each such session
  (the prompt lines and the output lines up to the next blank line) is wrapped in a ```pycon
  fence.
* Sphinx roles. ``:class:`LipschitzBound``` and ``:func:`~lipflow.bounds.lipschitz``` become
  inline code (``LipschitzBound``, ``lipschitz``), as ``help()`` readers see them.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

__all__ = ["DocstringCleanup", "fence_doctests", "strip_roles"]

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|obj|exc|const):`~?([^`]+)`")


def strip_roles(text: str) -> str:
    """Sphinx cross-reference roles as inline code; a leading ``~`` keeps the last name only."""

    def code(match: re.Match[str]) -> str:
        whole = match.group(0)
        target = match.group(1)
        return f"`{target.rsplit('.', 1)[-1] if '`~' in whole else target}`"

    return _ROLE.sub(code, text)


def fence_doctests(text: str) -> str:
    """``text`` with every unindented ``>>>`` session wrapped in a ```pycon fence."""
    lines, result = text.splitlines(), []
    in_fence, index = False, 0
    while index < len(lines):
        line = lines[index]
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        if in_fence or not line.startswith(">>>"):
            result.append(line)
            index += 1
            continue
        result.append("```pycon")
        while index < len(lines) and lines[index].strip():
            result.append(lines[index])
            index += 1
        result.append("```")
    return "\n".join(result)


class DocstringCleanup(griffe.Extension):
    """Fence bare doctest sessions and unwrap Sphinx roles in every docstring."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        value = obj.docstring.value
        if ">>>" in value:
            value = fence_doctests(value)
        if ":`" in value:
            value = strip_roles(value)
        obj.docstring.value = value
