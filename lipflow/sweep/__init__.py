"""Precision-sweep studies: a spec, a resumable result store, a runner, tables and figures."""

from lipflow.sweep.runner import SweepRun, compute_all, run_sweep
from lipflow.sweep.spec import Cell, SweepSpec, load_spec, spec_from_mapping
from lipflow.sweep.store import ResultStore

__all__ = ["Cell", "ResultStore", "SweepRun", "SweepSpec", "compute_all", "load_spec", "run_sweep", "spec_from_mapping"]
