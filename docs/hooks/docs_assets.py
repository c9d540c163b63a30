"""Files the site needs that are made, not written: the Figure 1 picture and MathJax.

* Figure 1 is computed by the same code as ``lipflow reproduce fig1`` when the site is built,
  so the picture and the table on the front page are what the installed lipflow produces. The
  result is cached in the temporary folder, keyed by the package source, so rebuilding the
  site without a code change costs nothing.
* MathJax 3 (its self-contained ``tex-svg.js``) is copied from the ``django-static-mathjax``
  package of the ``docs`` extra, so math renders without a network or a CDN.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import tempfile
from pathlib import Path

__all__ = ["FIG1_DEPTH", "fig1_assets", "mathjax_files"]

#: depth of the Figure 1 run: the default of ``lipflow reproduce fig1``
FIG1_DEPTH = 100


def _source_key(package_root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(package_root.rglob("*.py")):
        digest.update(str(path.relative_to(package_root)).encode())
        digest.update(path.read_bytes())
    for dist in ("numpy", "matplotlib", "mpmath", "autograd"):
        digest.update(importlib.metadata.version(dist).encode())
    return digest.hexdigest()[:16]


def fig1_assets(package_root: Path) -> tuple[bytes, str]:
    """(PNG bytes, the summary table text) of the Figure 1 experiment at default settings."""
    cache = Path(tempfile.gettempdir()) / "lipflow-docs-cache" / f"fig1-{_source_key(package_root)}"
    png, table = cache / "fig1.png", cache / "summary.txt"
    if png.is_file() and table.is_file():
        return png.read_bytes(), table.read_text(encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lipflow.experiments.fig1 import plot_fig1, run_fig1, summary_table

    rows = run_fig1(FIG1_DEPTH)
    figure = plot_fig1(rows)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    data, text = buffer.getvalue(), summary_table(rows)
    cache.mkdir(parents=True, exist_ok=True)
    for path, content in ((png, data), (table, text.encode("utf-8"))):
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(content)
        temporary.replace(path)
    return data, text


def mathjax_files() -> dict[str, Path]:
    """site path -> file for MathJax's tex-svg bundle and its licence.

    Raises:
        FileNotFoundError: the ``docs`` extra is not installed.
    """
    spec = importlib.util.find_spec("mathjax")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        es5 = Path(location) / "static" / "mathjax" / "es5"
        if (es5 / "tex-svg.js").is_file():
            return {
                "javascripts/vendor/mathjax/tex-svg.js": es5 / "tex-svg.js",
                "javascripts/vendor/mathjax/LICENSE": es5.parent / "LICENSE",
            }
    raise FileNotFoundError(
        "MathJax was not found: install the docs extra (pip install -e '.[docs]'), whose "
        "django-static-mathjax package ships MathJax 3 for offline math"
    )
