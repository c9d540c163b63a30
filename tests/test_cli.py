"""The command line as a new user meets it: help, and one-line errors for mistakes."""

from __future__ import annotations

import subprocess
import sys


def lipflow(*args):
    return subprocess.run([sys.executable, "-m", "lipflow", *args], capture_output=True, text=True)


def test_help_lists_commands():
    result = lipflow("--help")
    assert result.returncode == 0 and "reproduce" in result.stdout


def test_unknown_precision_is_one_line_without_traceback():
    result = lipflow("reproduce", "fig1", "--precisions", "float8", "--max-depth", "2")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "unknown precision 'float8'; valid names are" in result.stderr


def test_bad_depth_is_explained():
    result = lipflow("reproduce", "fig1", "--max-depth", "0")
    assert result.returncode == 2 and "--max-depth must be at least 1" in result.stderr


def test_missing_experiment_name_prints_help():
    result = lipflow("reproduce")
    assert result.returncode == 2 and "fig1" in result.stdout
