"""Reading a sweep's CSV files (``cells.csv``, ``results.csv``) strictly, line by line.

Both files have the tidy columns of :data:`COLUMNS`: one row per cell x metric, the rows of a
cell consecutive and in the spec's metric order (a *record*). The reader accepts what a
spreadsheet may do to a file (a UTF-8 byte-order mark, CRLF line ends) and tells apart

* a *torn tail*: the end of the log after its last complete record, as a kill inside a write
  or a power cut leaves it (an unterminated last line, or a last record missing metrics);
  it is dropped silently and recomputed;
* a *problem*: anything else that is not a valid record (a foreign header, a line with the
  wrong number of fields, bytes that are not UTF-8, an unknown metric, a value that is not a
  number, a record cut short in the middle of the file). Problems are reported with their
  line number and never dropped silently: callers refuse to write from such a file.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "AXIS_COLUMNS", "COLUMNS", "HEADER", "VERSION_COLUMNS", "LogScan", "describe_problems", "normalise", "scan_log",
]

AXIS_COLUMNS = ("block", "conditioner", "scale", "inputs", "seed", "precision", "depth")
VERSION_COLUMNS = ("lipflow", "numpy", "autograd", "mpmath")
COLUMNS = (
    "sweep", "cell", *AXIS_COLUMNS, "metric", "value", "reference", "dim", "samples", "semantics",
    *VERSION_COLUMNS,
)
HEADER = (",".join(COLUMNS) + "\n").encode()
BOM = b"\xef\xbb\xbf"


def normalise(data: bytes) -> bytes:
    """``data`` without a UTF-8 byte-order mark and with CRLF line ends turned into LF."""
    if data.startswith(BOM):
        data = data[len(BOM):]
    return data.replace(b"\r\n", b"\n")


@dataclass(frozen=True)
class LogScan:
    """What a file holds.

    ``records``: complete records by cell key (the first one wins); ``order``: their keys in
    file order; ``clean_length``: bytes of the (normalised) file up to the end of its last
    complete record; ``torn_bytes``: bytes after it; ``problems``: ``"line N: why"`` for
    every line that is neither a valid record nor part of the torn tail; ``canonical``:
    whether the file was already plain UTF-8 with LF line ends (no BOM, no CRLF).
    """

    records: dict[str, list[dict[str, str]]]
    order: list[str]
    clean_length: int
    torn_bytes: int
    problems: list[str] = field(default_factory=list)
    canonical: bool = True

    @property
    def rows(self) -> int:
        return sum(len(rows) for rows in self.records.values())


def _is_number(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) or text.strip().lower().lstrip("+-") in ("inf", "infinity", "nan")


def scan_log(raw: bytes, metrics: Sequence[str], *, columns: Sequence[str] = COLUMNS, key: str = "cell") -> LogScan:
    """Parse a sweep CSV file's bytes against the spec's ``metrics`` (see the module docstring).

    ``columns`` and ``key`` (the column naming a record) default to the sweep's; other append-only
    logs (the training monitor's) reuse the same rules with their own columns and key.
    """
    columns = tuple(columns)
    header = (",".join(columns) + "\n").encode()
    data = normalise(raw)
    canonical = data == raw
    if len(data) < len(header) and header.startswith(data):  # empty, or killed while writing the header
        return LogScan({}, [], 0, len(data), [], canonical)
    if not data.startswith(header):
        first = data.split(b"\n", 1)[0][:120].decode("utf-8", "replace")
        return LogScan({}, [], 0, 0, [f"line 1: the header is {first!r}, not lipflow's ({','.join(columns[:4])},...)"],
                       canonical)
    expected = list(metrics)
    records: dict[str, list[dict[str, str]]] = {}
    order: list[str] = []
    problems: list[str] = []
    position = clean = len(header)
    current: list[dict[str, str]] = []
    current_line = 0
    line = 1

    broken = ""  # the cell whose record a bad line broke: its other lines are not reported again

    def abandon(reason: str) -> None:
        nonlocal current
        if current:
            have = ", ".join(row["metric"] for row in current)
            problems.append(f"line {current_line}: the record of {key} {current[0][key]} stops after {have} "
                            f"({reason}; expected {', '.join(expected)})")
        current = []

    while position < len(data):
        end = data.find(b"\n", position)
        if end < 0:
            break  # an unterminated last line: the torn tail
        line += 1
        problem = None
        try:
            fields = next(csv.reader([data[position:end].decode("utf-8")]), [])
        except UnicodeDecodeError:
            fields, problem = [], "is not UTF-8 text"
        except csv.Error as error:
            fields, problem = [], f"is not valid CSV ({error})"
        if problem is None and len(fields) != len(columns):
            problem = f"has {len(fields)} fields, expected {len(columns)}"
        row = dict(zip(columns, fields, strict=False)) if problem is None else {}
        if problem is None and row["metric"] not in expected:
            problem = f"metric {row['metric']!r} is not one of this sweep's metrics ({', '.join(expected)})"
        if problem is None and not _is_number(row["value"]):
            problem = f"value {row['value']!r} of metric {row['metric']} is not a number"
        position = end + 1
        if problem is not None:
            problems.append(f"line {line}: {problem}")
            broken = current[0][key] if current else row.get(key, "")
            current = []
            continue
        if current and (row[key] != current[0][key] or row["metric"] != expected[len(current)]):
            abandon(f"line {line} begins another record")
        if not current:
            if row["metric"] != expected[0]:
                if row[key] != broken:
                    problems.append(f"line {line}: metric {row['metric']!r} of {key} {row[key]} does not begin a "
                                    f"record (expected {expected[0]!r} first)")
                continue
            current_line, broken = line, ""
        current.append(row)
        if len(current) == len(expected):
            name = current[0][key]
            if name not in records:
                records[name] = current
                order.append(name)
            current = []
            clean = end + 1
    # a record still open here is the torn tail (a power cut between its lines), not a problem
    return LogScan(records, order, clean, len(data) - clean, problems, canonical)


def describe_problems(path: Path, problems: Sequence[str], limit: int = 3) -> str:
    """``path:line: why`` for the first ``limit`` problems, and how many more there are."""
    shown = "; ".join(f"{path}:{problem.removeprefix('line ')}" for problem in problems[:limit])
    more = f" (and {len(problems) - limit} more)" if len(problems) > limit else ""
    return shown + more
