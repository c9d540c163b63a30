"""Fault injection: every bad input is a named error raised early, and no result file is harmed.

Each row of :data:`CASES` prepares a bad input in a fresh folder (next to a finished sweep
folder and a saved model, copied in) and then either calls the API, which must raise a
:class:`~lipflow.errors.LipflowError` whose message matches, or runs the CLI, which must exit
with status 2 and print one line ``lipflow CMD: error: ...`` matching it, with no traceback.
After every case, every file that existed before it is still there, byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lipflow as lf
from lipflow.cli.main import main
from lipflow.errors import LipflowError
from lipflow.sweep import load_spec, run_sweep, spec_from_mapping

TINY = {
    "name": "tiny",
    "samples": 2,
    "metrics": ["recon_error", "cond"],
    "axes": {"block": ["affine"], "precision": ["float16", "float64"], "depth": [1, 2]},
}


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> Path:
    """A finished sweep folder ``sweep/`` and a saved dim-2 model ``model.json``/``model.npz``."""
    root = tmp_path_factory.mktemp("originals")
    run_sweep(spec_from_mapping(TINY), root / "sweep", workers=1, progress=False)
    flow = lf.Flow([lf.AffineCoupling(2), lf.Reverse(2)])
    lf.save_flow(root / "model", flow, flow.init(seed=0))
    return root


@dataclass(frozen=True)
class Case:
    name: str
    prepare: Callable[[Path], Any]  # API: returns a zero-argument callable; CLI: returns argv
    match: str  # a regular expression the error message must contain
    cli: bool = False


# ---- helpers that prepare bad files ---------------------------------------------------------------


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    return path


def _model(where: Path, arrays: Callable[[dict[str, np.ndarray]], None] | None = None,
           document: Callable[[bytes], bytes] | None = None, npz: Callable[[bytes], bytes] | None = None) -> Path:
    """A copy of the saved model with its arrays, JSON bytes or npz bytes edited."""
    base = where / "model"
    shutil.copy(where / "orig" / "model.json", base.with_suffix(".json"))
    shutil.copy(where / "orig" / "model.npz", base.with_suffix(".npz"))
    if arrays is not None:
        with np.load(base.with_suffix(".npz")) as stored:
            values = {key: stored[key] for key in stored.files}
        arrays(values)
        with open(base.with_suffix(".npz"), "wb") as stream:
            np.savez(stream, **values)
    if document is not None:
        base.with_suffix(".json").write_bytes(document(base.with_suffix(".json").read_bytes()))
    if npz is not None:
        base.with_suffix(".npz").write_bytes(npz(base.with_suffix(".npz").read_bytes()))
    return base


def _first_key(values: dict[str, np.ndarray]) -> str:
    return sorted(values)[0]


def _nan(values: dict[str, np.ndarray]) -> None:
    key = _first_key(values)
    values[key] = values[key].copy()
    values[key].flat[0] = np.nan


def _complex(values: dict[str, np.ndarray]) -> None:
    key = _first_key(values)
    values[key] = values[key] + 0.5j


def _sweep(where: Path, edit: Callable[[Path], None] | None = None) -> Path:
    folder = where / "sweep"
    shutil.copytree(where / "orig" / "sweep", folder)
    if edit is not None:
        edit(folder)
    return folder


def _set_value(folder: Path, line: int, value: str) -> None:
    lines = (folder / "cells.csv").read_text().split("\n")
    fields = lines[line - 1].split(",")
    fields[10] = value
    lines[line - 1] = ",".join(fields)
    (folder / "cells.csv").write_text("\n".join(lines))


def _readonly(where: Path) -> Path:
    """A folder this process cannot write in (chmod for a user, chattr +i for root), or a skip."""
    folder = where / "readonly"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return folder
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        return folder
    pytest.skip("running as root without chattr: no folder is read-only here")


def _unlock(where: Path) -> None:
    folder = where / "readonly"
    if folder.exists():
        if os.geteuid() == 0 and shutil.which("chattr"):
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        folder.chmod(0o755)


def _flow2() -> tuple[lf.Flow, Any]:
    flow = lf.Flow([lf.AffineCoupling(2), lf.Reverse(2)])
    return flow, flow.init(seed=0)


def _api_forward(x: Any, params: Any = None, ctx: str | None = None) -> Callable[[], Any]:
    flow, own = _flow2()
    return lambda: flow.forward(own if params is None else params, x, ctx=ctx)


def _complex_params() -> Any:
    params = _flow2()[1]
    params[0]["t"]["weights"][0] = params[0]["t"]["weights"][0] + 1j
    return params


SPEC = 'name = "s"\n[axes]\nblock = ["affine"]\nprecision = ["float16"]\ndepth = [1]\n'
SWEEP = ["sweep", "--workers", "1", "--no-progress", "--no-report"]
FIG1 = ["reproduce", "fig1", "--max-depth", "2", "--workers", "1", "--no-progress"]

CASES = [
    # ---- output folders ---------------------------------------------------------------------------------
    Case("sweep --out is a file", lambda w: [*SWEEP, str(_write(w / "s.toml", SPEC)), "--out",
                                             str(_write(w / "afile", "x"))], r"--out .*afile' is a file", cli=True),
    Case("sweep --out under a file", lambda w: [*SWEEP, str(_write(w / "s.toml", SPEC)), "--out",
                                                str(_write(w / "afile", "x") / "sub")],
         r"cannot be created: .*afile' is a file", cli=True),
    Case("sweep --out in a read-only folder", lambda w: [*SWEEP, str(_write(w / "s.toml", SPEC)), "--out",
                                                         str(_readonly(w) / "run")], r"is not writable", cli=True),
    Case("fig1 --out is a file", lambda w: [*FIG1, "--out", str(_write(w / "afile", "x"))], r"is a file; give a folder",
         cli=True),
    Case("fig1 --out under a file", lambda w: [*FIG1, "--out", str(_write(w / "afile", "x") / "sub")],
         r"is a file, not a folder", cli=True),
    Case("fig1 --out read-only", lambda w: [*FIG1, "--out", str(_readonly(w))], r"is not writable", cli=True),
    Case("sweep --resume a file", lambda w: [*SWEEP, "--resume", str(_write(w / "afile", "x"))], r"is a file",
         cli=True),
    Case("sweep --resume not a sweep folder", lambda w: [*SWEEP, "--resume", str(w)], r"is not a sweep folder",
         cli=True),
    Case("sweep without --out", lambda w: [*SWEEP, str(_write(w / "s.toml", SPEC))],
         r"give an output folder with --out", cli=True),
    Case("sweep --out holds another sweep", lambda w: [*SWEEP, str(_write(w / "s.toml", SPEC)), "--out",
                                                       str(_sweep(w))], r"holds a different sweep", cli=True),
    # ---- spec files -----------------------------------------------------------------------------------
    Case("spec is a folder", lambda w: [*SWEEP, str(w), "--out", str(w / "run")], r"is a folder; give a TOML file",
         cli=True),
    Case("spec is binary", lambda w: [*SWEEP, str(_write(w / "b.toml", b"\x7fELF\x02\x01\x01\x00\xd0\x80\xff")),
                                      "--out", str(w / "run")], r"is not UTF-8 text", cli=True),
    Case("spec is empty", lambda w: [*SWEEP, str(_write(w / "e.toml", "")), "--out", str(w / "run")],
         r"spec file .* is empty", cli=True),
    Case("spec has only comments", lambda w: [*SWEEP, str(_write(w / "c.toml", "# nothing\n")), "--out",
                                              str(w / "run")], r"is empty", cli=True),
    Case("spec does not exist", lambda w: [*SWEEP, str(w / "missing.toml"), "--out", str(w / "run")],
         r"does not exist", cli=True),
    Case("spec is not TOML", lambda w: [*SWEEP, str(_write(w / "t.toml", "name = \n")), "--out", str(w / "run")],
         r"is not valid TOML", cli=True),
    Case("spec names an unknown precision", lambda w: [*SWEEP, str(_write(w / "p.toml", SPEC.replace(
        '"float16"', '"float8"'))), "--out", str(w / "run")], r"float8", cli=True),
    Case("spec residual coeff 1.5", lambda w: [*SWEEP, str(_write(w / "k.toml", "coeff = 1.5\n" + SPEC)),
                                               "--out", str(w / "run")], r"coeff", cli=True),
    Case("API load_spec of a folder", lambda w: lambda: load_spec(w), r"is a folder"),
    Case("API load_spec of an empty file", lambda w: lambda: load_spec(_write(w / "e.toml", "")), r"is empty"),
    # ---- sweep stores ---------------------------------------------------------------------------------
    Case("report: non-numeric value", lambda w: ["report", str(_sweep(w, lambda f: _set_value(f, 3, "abc"))),
                                                 "--no-figures"], r"cells\.csv:3: value 'abc'", cli=True),
    Case("resume: a value with a comma (20 fields)",
         lambda w: [*SWEEP, "--resume", str(_sweep(w, lambda f: _set_value(f, 2, "1,2")))],
         r"cells\.csv:2: has 20 fields", cli=True),
    Case("report: foreign header", lambda w: ["report", str(_sweep(w, lambda f: _write(
        f / "cells.csv", "a,b\n" + (f / "cells.csv").read_text().split("\n", 1)[1]))), "--no-figures"],
        r"cells\.csv:1: the header is 'a,b'", cli=True),
    Case("report: cells.csv is a folder", lambda w: ["report", str(_sweep(w, lambda f: (
        (f / "cells.csv").unlink(), (f / "cells.csv").mkdir()))), "--no-figures"], r"cannot read .*cells\.csv",
        cli=True),
    Case("report: results.csv holds a foreign cell", lambda w: ["report", str(_sweep(w, lambda f: _write(
        f / "results.csv", re.sub(r"^(tiny,)[0-9a-f]{16}", r"\g<1>0000000000000000",
                                  (f / "results.csv").read_text(), count=2, flags=re.MULTILINE)))), "--no-figures"],
        r"refusing to replace .*1 cell that is not in this sweep's grid", cli=True),
    Case("report: not a sweep folder", lambda w: ["report", str(w)], r"is not a sweep folder", cli=True),
    Case("report: bad heatmap axes", lambda w: ["report", str(_sweep(w)), "--heatmap", "depth", "colour"],
         r"colour", cli=True),
    Case("sweep --workers 0", lambda w: [*SWEEP[:1], str(_write(w / "s.toml", SPEC)), "--out", str(w / "run"),
                                         "--workers", "0"], r"--workers must be at least 1", cli=True),
    Case("API run_sweep workers=0", lambda w: lambda: run_sweep(load_spec(_write(w / "s.toml", SPEC)), w / "run",
                                                                workers=0), r"workers must be a positive integer"),
    # ---- saved models ---------------------------------------------------------------------------------
    Case("bounds: truncated npz", lambda w: ["bounds", "--model", str(_model(w, npz=lambda b: b[: len(b) // 2]))
                                             + ".json", "--box", "-1", "1"], r"not a complete \.npz archive", cli=True),
    Case("bounds: empty npz", lambda w: ["bounds", "--model", str(_model(w, npz=lambda b: b"")) + ".json",
                                         "--box", "-1", "1"], r"it is empty", cli=True),
    Case("bounds: non-UTF-8 JSON", lambda w: ["bounds", "--model", str(_model(w, document=lambda b: b.replace(
        b'"format"', b'"f\xe9rmat"', 1))) + ".json", "--box", "-1", "1"], r"is not UTF-8 text", cli=True),
    Case("bounds: NaN weights", lambda w: ["bounds", "--model", str(_model(w, arrays=_nan)) + ".json", "--box", "-1",
                                           "1"], r"NaN/inf entries", cli=True),
    Case("bounds: complex weights", lambda w: ["bounds", "--model", str(_model(w, arrays=_complex)) + ".json", "--box",
                                               "-1", "1"], r"has dtype complex128", cli=True),
    Case("bounds: model missing", lambda w: ["bounds", "--model", str(w / "none.json"), "--box", "-1", "1"],
         r"does not exist", cli=True),
    Case("bounds: JSON is not JSON", lambda w: ["bounds", "--model", str(_model(w, document=lambda b: b[:10]))
                                                + ".json"], r"is not valid JSON", cli=True),
    Case("bounds: negative box as values, reversed", lambda w: ["bounds", "affine", "--box", "1e3", "-1e3"], r"box",
         cli=True),
    Case("API load_flow truncated npz", lambda w: lambda: lf.load_flow(_model(w, npz=lambda b: b[:100])),
         r"not a complete \.npz archive"),
    Case("API load_flow non-UTF-8 JSON", lambda w: lambda: lf.load_flow(_model(w, document=lambda b: b"\xff\xfe" + b)),
         r"is not UTF-8 text"),
    Case("API load_flow NaN weights", lambda w: lambda: lf.load_flow(_model(w, arrays=_nan)), r"NaN/inf entries"),
    Case("API load_flow complex weights", lambda w: lambda: lf.load_flow(_model(w, arrays=_complex)), r"complex128"),
    Case("API save_flow NaN params", lambda w: lambda: lf.save_flow(w / "out" / "m", _flow2()[0], [
        {**_flow2()[1][0], "t": {**_flow2()[1][0]["t"], "weights": [np.full((1, 32), np.nan),
                                                                     *_flow2()[1][0]["t"]["weights"][1:]]}},
        _flow2()[1][1]]), r"NaN/inf"),
    # ---- experiments ----------------------------------------------------------------------------------
    Case("checkerboard --grid-step 0", lambda w: ["reproduce", "checkerboard", "--grid-step", "0", "--out",
                                                  str(w / "cb")], r"--grid-step must be in \(0, 4\]", cli=True),
    Case("checkerboard --grid-step -0.5", lambda w: ["reproduce", "checkerboard", "--grid-step", "-0.5", "--out",
                                                     str(w / "cb")], r"--grid-step must be in", cli=True),
    Case("fig1 --max-depth 0", lambda w: [*FIG1[:2], "--max-depth", "0", "--out", str(w / "f")],
         r"--max-depth must be at least 1", cli=True),
    # ---- the API of blocks and flows --------------------------------------------------------------------
    Case("params of a dim-4 flow to a dim-2 flow", lambda w: _api_forward(
        np.ones((1, 2)), lf.Flow([lf.AffineCoupling(4), lf.Reverse(4)]).init(0)),
        r"block 0 \(AffineCoupling\(dim=2\)\) has shape \(2, 32\), expected \(1, 32\)"),
    Case("params of a dim-4 flow, inverse", lambda w: lambda: _flow2()[0].inverse(
        lf.Flow([lf.AffineCoupling(4), lf.Reverse(4)]).init(0), np.ones((1, 2))), r"block 0 \(AffineCoupling"),
    Case("three param sets for two blocks", lambda w: _api_forward(np.ones((1, 2)), [*_flow2()[1], {}]),
         r"needs a list of 2 parameter sets"),
    Case("flow.init(seed=-1)", lambda w: lambda: _flow2()[0].init(seed=-1), r"seed must be a non-negative integer"),
    Case("flow.init(seed=1.5)", lambda w: lambda: _flow2()[0].init(seed=1.5), r"seed must be a non-negative integer"),
    Case("block.init(seed='a')", lambda w: lambda: lf.AffineCoupling(2).init(seed="a"), r"seed must be"),
    Case("complex input", lambda w: _api_forward(np.ones((1, 2)) + 1j), r"input is complex"),
    Case("complex input at an explicit precision", lambda w: _api_forward(np.ones((1, 2)) + 1j, ctx="float32"),
         r"input is complex"),
    Case("complex params", lambda w: _api_forward(np.ones((1, 2)), _complex_params()),
         r"params/0/t/weights/0 is complex"),
    Case("string input", lambda w: _api_forward([["a", "b"]]), r"dtype <U1 is not numeric"),
    Case("ragged list input", lambda w: _api_forward([[1.0], [1.0, 2.0]]), r"not a rectangular array"),
    Case("three features for dim 2", lambda w: _api_forward(np.ones((1, 3))), r"has 3 features"),
    Case("one point as a vector", lambda w: _api_forward(np.ones(2)), r"must have shape \(n, 2\)"),
    Case("empty Flow", lambda w: lambda: lf.Flow([]), r"at least one block"),
    Case("Flow of mixed dimensions", lambda w: lambda: lf.Flow([lf.AffineCoupling(2), lf.Reverse(3)]),
         r"share one dimension"),
    Case("unknown precision", lambda w: lambda: lf.precision("float8"), r"float8"),
]


def _snapshot(*roots: Path) -> dict[Path, str]:
    return {
        path: hashlib.sha256(path.read_bytes()).hexdigest()
        for root in roots if root.exists() for path in root.rglob("*")
        if path.is_file() and path.name != ".lock" and os.access(path, os.R_OK)  # the lock records its last owner
    }


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_a_named_error_and_harms_no_file(case, originals, tmp_path, monkeypatch, capsys):
    shutil.copytree(originals, tmp_path / "orig")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(originals, work / "orig")
    monkeypatch.chdir(work)
    try:
        prepared = case.prepare(work)
        before = _snapshot(tmp_path)
        if case.cli:
            try:
                code = main(prepared)
            except SystemExit as exit_:  # argparse's own usage errors
                code = exit_.code
            err = capsys.readouterr().err
            assert code == 2, f"exit {code}, stderr: {err}"
            assert "Traceback" not in err
            lines = [line for line in err.splitlines() if line.strip()]
            assert len(lines) == 1 and re.match(r"lipflow \w+: error: ", lines[0]), err
            assert re.search(case.match, lines[0]), lines[0]
        else:
            with pytest.raises(LipflowError, match=case.match):
                prepared()
        after = _snapshot(tmp_path)
    finally:
        _unlock(work)
    changed = [str(path) for path, digest in before.items() if after.get(path) != digest]
    assert not changed, f"pre-existing files changed or vanished: {changed}"


def test_there_are_at_least_forty_bad_inputs():
    assert len(CASES) >= 40 and len({case.name for case in CASES}) == len(CASES)


def test_a_list_input_is_accepted_like_numpy():
    flow, params = _flow2()
    assert np.array_equal(flow.forward(params, [[1.0, 2.0]]), flow.forward(params, np.array([[1.0, 2.0]])))
    assert np.array_equal(flow.inverse(params, ((0.5, -1.0),)), flow.inverse(params, np.array([[0.5, -1.0]])))


def test_negative_numbers_parse_as_option_values(capsys):
    assert main(["bounds", "affine", "--box", "-1e3", "1e3"]) == 0
    assert main(["bounds", "affine", "--box", "-.5", ".5"]) == 0
    assert "error" not in capsys.readouterr().err
