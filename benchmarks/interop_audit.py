"""Audit of third-party flows: one summary line and the audit time per model.

Each model of ``tests/interop_models.py`` (two per library: zuko, nflows, normflows, FrEIA) is
trained for ``--steps`` Adam steps on two moons (standardised, 1024 points) and audited on 256
data points plus the failure-finding inputs out to radius 8, at float32. Printed per model: the
audit time, its ratio to one plain float32 round trip of the same inputs (measured side by side,
so the ratio survives a loaded machine better than the time), the worst reconstruction error on
data and over all inputs, the counts of algorithmic inverse errors and of samples beyond the
rounding-only budget, and the worst condition number.

Run: python benchmarks/interop_audit.py [--steps 300] [--only zuko,FrEIA]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import interop_models

from lipflow.interop.adapters import adapt
from lipflow.interop.torch import audit


def moons(n: int = 1024) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    t = torch.rand(n, generator=g) * torch.pi
    upper = torch.arange(n) % 2 == 0
    x = torch.where(upper, torch.cos(t), 1 - torch.cos(t))
    y = torch.where(upper, torch.sin(t), 0.5 - torch.sin(t))
    v = torch.stack([x, y], dim=1) + 0.05 * torch.randn(n, 2, generator=g)
    return ((v - v.mean(0)) / v.std(0)).float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--only", default="", help="comma-separated libraries")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = moons()
    interop_models.data = lambda n=256, seed=0: x[:n]
    wanted = [w for w in args.only.split(",") if w]
    for library, models in interop_models.MODELS.items():
        if (wanted and library not in wanted) or importlib.util.find_spec(library) is None:
            continue
        for name, make in models.items():
            model = interop_models.train(make(0), args.steps)
            start = time.perf_counter()
            report = audit(model, x[:256], inputs="all", radius=8.0)
            seconds = time.perf_counter() - start
            flow, xs = adapt(model), torch.tensor(report.x, dtype=torch.float32)
            model.eval()
            start = time.perf_counter()
            with torch.no_grad():
                flow.inverse(flow.forward(xs.clone()))
            plain = time.perf_counter() - start
            s = report.summary(per_sample=False)
            print(f"{library}/{name}: audit {seconds:.2f} s ({seconds / plain:.0f}x one round trip) on "
                  f"{s['n']} inputs; "
                  f"worst reconstruction data {s['groups']['data']['reconstruction']['max']:.2g}, all "
                  f"{s['reconstruction']['max']:.2g} (Inf {s['reconstruction']['n_inf']}, NaN "
                  f"{s['reconstruction']['n_nan']}); algorithmic {s['algorithmic_errors']['count']} of "
                  f"{s['algorithmic_errors']['decided']}; beyond rounding budget "
                  f"{s['beyond_rounding_budget']['count']} of "
                  f"{s['beyond_rounding_budget']['decided']}; cond max {s['cond']['max']:.3g}", flush=True)


if __name__ == "__main__":
    main()
