"""The sweep store never loses a row: bad, re-encoded or missing files are read, recovered or refused."""

from __future__ import annotations

import re

import pytest

from lipflow.cli.main import main
from lipflow.errors import LipflowError
from lipflow.sweep import run_sweep, spec_from_mapping

TINY = {
    "name": "tiny",
    "samples": 3,
    "metrics": ["recon_error", "cond"],
    "axes": {"block": ["affine"], "precision": ["float16", "float64"], "depth": [1, 2, 3]},
}
CELLS = 6


@pytest.fixture
def finished(tmp_path):
    """A finished sweep folder, its results.csv bytes and the number of its data rows."""
    spec = spec_from_mapping(TINY)
    run = run_sweep(spec, tmp_path / "run", workers=1, progress=False)
    data = run.store.results_path.read_bytes()
    return run.store, spec, data, data.count(b"\n") - 1


def _report(store, capsys):
    code = main(["report", str(store.root), "--no-figures"])
    return code, capsys.readouterr()


def test_bom_and_crlf_store_reads_every_cell_and_resumes_to_the_same_results(finished, capsys):
    store, spec, data, _rows = finished
    store.log_path.write_bytes(b"\xef\xbb\xbf" + store.log_path.read_bytes().replace(b"\n", b"\r\n"))
    store.results_path.write_bytes(b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n"))
    assert len(store.finished(spec)) == CELLS
    code, _out = _report(store, capsys)
    assert code == 0 and f"{CELLS} of {CELLS} cells finished" in (store.root / "summary.md").read_text()
    assert store.results_path.read_bytes() == data
    again = run_sweep(spec, store.root, workers=1, progress=False)
    assert (again.computed, again.skipped) == (0, CELLS)
    assert not store.log_path.read_bytes().startswith(b"\xef\xbb\xbf") and b"\r\n" not in store.log_path.read_bytes()


def test_deleted_cell_store_is_recovered_from_results_csv(finished, capsys):
    store, spec, data, rows = finished
    store.log_path.unlink()
    code, _ = _report(store, capsys)
    assert code == 0 and store.results_path.read_bytes() == data
    again = run_sweep(spec, store.root, workers=1, progress=False)
    assert again.computed == 0 and store.results_path.read_bytes() == data
    assert store.log_path.read_bytes().count(b"\n") == rows + 1  # the log holds every cell again


def _set_field(text: str, line: int, column: int, value: str) -> str:
    lines = text.split("\n")
    fields = lines[line - 1].split(",")
    fields[column] = value
    lines[line - 1] = ",".join(fields)
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: _set_field(text, 4, 10, "abc"),
         r"cells\.csv:4: value 'abc' of metric recon_error is not a number"),
        (lambda text: "a,b,c\n" + text.split("\n", 1)[1], r"cells\.csv:1: the header is 'a,b,c'"),
        (lambda text: text.replace("\n", "\nnot,a,record\n", 2).replace("\nnot,a,record\n", "\n", 1),
         r"cells\.csv:3: has 3 fields, expected 19"),
        (lambda text: _set_field(text, 3, 9, "kond"), r"cells\.csv:3: metric 'kond' is not one of"),
        (lambda text: _set_field(text, 3, 6, "abc"),
         r"cells\.csv: the record of cell \w+ \(metric \w+\) does not match the sweep's spec: seed is 'abc'"),
    ],
    ids=["non-numeric value", "foreign header", "short line", "unknown metric", "edited axis value"],
)
def test_a_bad_line_is_named_and_nothing_is_written(finished, capsys, edit, message):
    store, spec, data, _rows = finished
    store.log_path.write_text(edit(store.log_path.read_text()))
    code, out = _report(store, capsys)
    assert code == 2 and "Traceback" not in out.err
    assert out.err.count("\n") == 1
    assert re.search(message, out.err), out.err
    assert store.results_path.read_bytes() == data  # untouched
    with pytest.raises(LipflowError, match=message):
        run_sweep(spec, store.root, workers=1, progress=False)
    assert store.results_path.read_bytes() == data


def test_results_csv_is_never_replaced_by_a_shorter_one(finished, capsys):
    store, _spec, data, _rows = finished
    # a results.csv holding a cell the log lost and the grid does not have (another spec's cell)
    foreign = data.replace(data.splitlines()[1].split(b",")[1], b"0000000000000000")
    store.results_path.write_bytes(foreign)
    code, out = _report(store, capsys)
    assert code == 2 and "refusing to replace" in out.err and "not in this sweep's grid" in out.err
    assert store.results_path.read_bytes() == foreign


def test_a_torn_header_is_rewritten(finished):
    store, spec, data, _rows = finished
    store.log_path.write_bytes(b"sweep,cell,blo")
    store.results_path.unlink()
    again = run_sweep(spec, store.root, workers=1, progress=False)
    assert again.computed == CELLS and store.results_path.read_bytes() == data


def test_an_unreadable_cell_store_is_a_named_error(finished, capsys):
    store, _spec, data, _rows = finished
    store.log_path.unlink()
    store.log_path.mkdir()
    code, out = _report(store, capsys)
    assert code == 2 and "cells.csv" in out.err and "Traceback" not in out.err
    assert store.results_path.read_bytes() == data
