"""The documentation site builds in strict mode and is complete and self-contained.

Strict mode turns every broken link, missing anchor, unresolved API reference and docstring
that documents a parameter the signature lacks into an error. Needs the ``docs`` extra
(``pip install -e '.[docs]'``); skipped with that reason otherwise. The tests that build the site
are marked ``thorough`` (about 25 s): they run in CI's second step and with ``--thorough``. The hook's page parsing is
tested without MkDocs.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "hooks"))

import docs_theory  # noqa: E402  (the hook's helper, importable without MkDocs)

DOCS_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "pymdownx", "mathjax")
BUILD_TIMEOUT_S = 300


def _missing_docs_packages() -> list[str]:
    missing = []
    for name in DOCS_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(name)
    return missing


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = _missing_docs_packages()
    if missing:
        pytest.skip(f"the docs extra is not installed (missing {', '.join(missing)}): pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "MPLBACKEND": "Agg"},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return out


@pytest.mark.thorough
def test_every_theory_page_is_in_the_site(site: Path) -> None:
    for page in (ROOT / "theory").glob("*.md"):
        if page.name.lower() in ("index.md", "readme.md"):
            continue
        assert (site / "theory" / page.with_suffix(".html").name).is_file(), f"theory/{page.name} is missing"
    assert (site / "theory" / "index.html").is_file()


@pytest.mark.thorough
def test_math_is_marked_and_mathjax_is_bundled(site: Path) -> None:
    page = (site / "theory" / "lem-additive-simple.html").read_text(encoding="utf-8")
    assert 'class="arithmatex"' in page, "arithmatex did not mark the page's math for MathJax"
    bundle = site / "javascripts" / "vendor" / "mathjax" / "tex-svg.js"
    assert bundle.is_file() and bundle.stat().st_size > 500_000, "the MathJax bundle is missing"
    assert "vendor/mathjax/tex-svg.js" in page


_TAG = re.compile(r"<(script|link|img|iframe)\b[^>]*>", re.IGNORECASE)
_REMOTE = re.compile(r"\b(?:src|href)\s*=\s*[\"'](?:https?:)?//", re.IGNORECASE)
_LOADED_LINK = re.compile(r"\brel\s*=\s*[\"'][^\"']*(stylesheet|preload|preconnect|icon|modulepreload)", re.IGNORECASE)


def remote_resources(html: str) -> list[str]:
    """Tags that make a browser fetch something from another host (plain links excluded)."""
    found = []
    for match in _TAG.finditer(html):
        tag = match.group(0)
        if not _REMOTE.search(tag):
            continue
        if match.group(1).lower() == "link" and not _LOADED_LINK.search(tag):
            continue  # rel="canonical" and the like load nothing
        found.append(tag)
    return found


def test_remote_resource_detection() -> None:
    assert remote_resources('<script src="https://cdn.example/x.js"></script>')
    assert remote_resources('<link href="//fonts.example/css" rel="stylesheet">')
    assert not remote_resources('<link rel="canonical" href="https://example.org/">')
    assert not remote_resources('<script src="javascripts/vendor/mathjax/tex-svg.js"></script>')


@pytest.mark.thorough
def test_the_site_loads_nothing_from_the_network(site: Path) -> None:
    offenders = [
        f"{html.relative_to(site)}: {tag[:120]}"
        for html in site.rglob("*.html")
        for tag in remote_resources(html.read_text(encoding="utf-8"))
    ]
    assert not offenders, "pages load remote resources:\n" + "\n".join(offenders[:20])


@pytest.mark.thorough
def test_cli_and_api_references_are_generated(site: Path) -> None:
    cli = (site / "cli.html").read_text(encoding="utf-8")
    assert "lipflow reproduce fig1" in cli
    for module in ("lipflow", "lipflow.precision", "lipflow.blocks", "lipflow.analysis"):
        assert (site / "reference" / f"{module}.html").is_file(), f"no API page for {module}"
    blocks = (site / "reference" / "lipflow.blocks.html").read_text(encoding="utf-8")
    assert 'id="lipflow.blocks.AffineCoupling"' in blocks


@pytest.mark.thorough
def test_readme_modules_and_computed_by_targets_are_in_the_built_reference(site: Path) -> None:
    """Fails when a README-listed module has no page, or a theory page's "computed by:" target
    has no heading of that id on its module's page."""
    import docs_reference

    for module in docs_reference.readme_modules(ROOT):
        assert (site / "reference" / f"{module}.html").is_file(), f"the README lists {module}; it has no API page"
    for page in docs_theory.read_theory(ROOT / "theory"):
        for target in page.computed_by:
            module = docs_reference.defining_module(target, ROOT)
            html = site / "reference" / f"{module}.html"
            assert html.is_file(), f"theory/{page.path.name}: {target}: no API page for {module}"
            assert f'id="{target}"' in html.read_text(encoding="utf-8"), (
                f"theory/{page.path.name}: computed by {target}, which {html.name} does not document"
            )
        rendered = (site / "theory" / page.path.with_suffix(".html").name).read_text(encoding="utf-8")
        for target in page.computed_by:
            assert f"#{target}" in rendered, f"theory/{page.path.name} does not link {target} to its heading"


@pytest.mark.thorough
def test_front_page_shows_figure1_and_the_readme_commands(site: Path) -> None:
    index = (site / "index.html").read_text(encoding="utf-8")
    assert (site / "generated" / "fig1.png").stat().st_size > 10_000
    assert "generated/fig1.png" in index
    assert "lipflow reproduce fig1" in index and "pytest" in index
    assert "lipflow:" not in index, "a hook marker was left unreplaced"


# ---- the hook's theory parsing, without MkDocs -----------------------------------------------


def test_theory_pages_carry_label_and_provenance() -> None:
    pages = docs_theory.read_theory(ROOT / "theory")
    if not pages:
        pytest.skip("theory/ has no pages yet")
    for page in pages:
        where = f"theory/{page.path.name}"
        assert page.label and ":" in page.label, f"{where}: no `label:` line under the title"
        assert page.computed_by, f"{where}: no `computed by:` line"
        assert page.checked_by, f"{where}: no `checked by:` line"
        assert not page.body.lstrip().lower().startswith(("label:", "computed by:", "checked by:"))


def test_label_links_skip_own_page_and_existing_links() -> None:
    urls = {"lem:a": "theory/lem-a.html", "lem:b": "theory/lem-b.html"}
    html = '<p><code>lem:a</code> <code>lem:b</code> <a href="x"><code>lem:b</code></a> <code>lem:zz</code></p>'
    linked = docs_theory.link_labels(html, "theory/lem-a.html", urls)
    assert linked.count('<a href="lem-b.html"><code>lem:b</code></a>') == 1
    assert "<p><code>lem:a</code>" in linked
    assert '<a href="x"><code>lem:b</code></a>' in linked and "<code>lem:zz</code>" in linked


def test_bare_doctests_in_docstrings_are_fenced() -> None:
    pytest.importorskip("griffe", reason="the docs extra is not installed: pip install -e '.[docs]'")
    import griffe_docstrings

    text = "Summary.\n\n>>> x = {'a': [1]}\n>>> x['a'][0]\n1\n\nMore text.\n\nExample:\n    >>> 1 + 1\n    2"
    fenced = griffe_docstrings.fence_doctests(text)
    assert "```pycon\n>>> x = {'a': [1]}\n>>> x['a'][0]\n1\n```" in fenced
    assert "Example:\n    >>> 1 + 1\n    2" in fenced  # Google sections are left to the parser


def test_sphinx_roles_become_inline_code() -> None:
    pytest.importorskip("griffe", reason="the docs extra is not installed: pip install -e '.[docs]'")
    import griffe_docstrings

    text = "Returns a :class:`LipschitzBound`; see :func:`~lipflow.bounds.lipschitz` and :mod:`lipflow.io`."
    assert griffe_docstrings.strip_roles(text) == "Returns a `LipschitzBound`; see `lipschitz` and `lipflow.io`."
