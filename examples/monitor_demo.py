"""Watch two flows lose numerical invertibility while they train, and warn before they break.

1. lipflow's Glow regression onto a nearly singular map (paper Fig. 6), trained without and
   with the NF / FD regularisers, checked in float32 (the precision the experiment evaluates).
   "Explosion": the first step at which the float32 round trip on 500 held-out points loses
   every digit (largest ||x - F^-1(F(x))|| above the points' RMS norm) or gives Inf/NaN.
2. A normflows RealNVP (affine couplings, exp scales) on two moons at a learning rate that
   makes it diverge, checked in its own float32 through the adapter interface.

For each run it prints the step of the monitor's first warning, of the explosion / first
non-finite loss, and the margin, and writes the logs and figures to ``--out``.
Run: ``python examples/monitor_demo.py --out monitor-demo`` (LIPFLOW_SMOKE=1: tiny sizes).
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np

from lipflow.experiments.data import regression_pairs
from lipflow.experiments.regression2d import RegressionConfig, build_flow, fd_regulariser, make_objective
from lipflow.monitor import Monitor, NumericalInvertibilityWarning
from lipflow.train import AdamConfig, fit

SMOKE = os.environ.get("LIPFLOW_SMOKE") == "1"


def first(steps: list[int]) -> int | None:
    return min(steps) if steps else None


def regression_demo(out: Path, steps: int, every: int, lr: float, nf_coeff: float, seed: int = 0) -> list[dict]:
    config = RegressionConfig(flow_steps=2 if SMOKE else 12, steps=steps, lr=lr, nf_coeff=nf_coeff)
    x, y = regression_pairs(config.n_train, np.random.default_rng(seed))
    x_test, _ = regression_pairs(config.n_test, np.random.default_rng(seed + 1))
    flow = build_flow(config)
    test_norm = math.sqrt(np.mean(np.sum(x_test ** 2, axis=1)))
    x32 = x_test.astype(np.float32)
    fd = fd_regulariser(config)
    summary = []
    for name in config.models:
        (out / f"regression2d_{name}.csv").unlink(missing_ok=True)  # start afresh (a monitor resumes its log)
        monitor = Monitor(flow, x, params=flow.init(seed), ctx="float32", every=every,
                          log=out / f"regression2d_{name}.csv", run=f"regression2d-{name}")
        exploded: list[int] = []

        def callback(step: int, params, monitor=monitor, exploded=exploded) -> dict:
            with np.errstate(all="ignore"):
                back = flow.inverse(params, flow.forward(params, x32, ctx="float32"), ctx="float32")
                error = np.linalg.norm(x_test - back.astype(np.float64), axis=1)
            if not np.all(np.isfinite(error)) or error.max() > test_norm:
                exploded.append(step)
            monitor.step(step, params)
            return {}

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NumericalInvertibilityWarning)
            result = fit(make_objective(flow, name, config, x, y), flow.init(seed),
                         lambda step, rng: fd.directions(rng, x.shape), steps=config.steps,
                         adam=AdamConfig(lr=config.lr), seed=seed, monitor=callback, monitor_every=1,
                         progress=False)
        monitor.close()
        nonfinite_loss = first([k for k, v in enumerate(result.losses) if not math.isfinite(v)])
        summary.append(report(f"regression2d {name}", monitor, explosion=first(exploded),
                              nonfinite_loss=nonfinite_loss))
        events = {"explosion (float32 round trip, test set)": first(exploded)} if exploded else {}
        monitor.plot(out / f"regression2d_{name}.png", events=events,
                     title=f"regression2d, {name}: {config.flow_steps} Glow steps, Adam lr {config.lr:g}, "
                           f"checks every {every} steps in float32")
    return summary


def normflows_demo(out: Path, steps: int, every: int, lr: float, seed: int = 0) -> dict | None:
    try:
        import normflows as nf
        import torch
        from sklearn.datasets import make_moons
    except ImportError as error:
        print(f"skipping the normflows demonstration ({error}); pip install torch normflows scikit-learn")
        return None
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    data = torch.tensor(make_moons(2000, noise=0.05, random_state=0)[0], dtype=torch.float32)
    blocks = []
    for _ in range(2 if SMOKE else 16):
        blocks += [nf.flows.AffineCouplingBlock(nf.nets.MLP([1, 32, 32, 2], init_zeros=True)),
                   nf.flows.Permute(2, mode="swap")]
    model = nf.NormalizingFlow(nf.distributions.base.DiagGaussian(2, trainable=False), blocks)
    couplings = [b.flows[1] for b in blocks if isinstance(b, nf.flows.AffineCouplingBlock)]

    def scales(x: torch.Tensor) -> dict[str, float]:
        """Smallest scale exp(-s) per coupling in the data -> latent direction (forward hooks)."""
        found: dict[str, float] = {}
        hooks = [c.param_map.register_forward_hook(
            lambda module, args, output, k=k: found.__setitem__(f"coupling {k}", float(torch.exp(
                -output[:, 1::2]).min()))) for k, c in enumerate(couplings)]
        try:
            model.inverse(x)
        finally:
            for hook in hooks:
                hook.remove()
        return found

    (out / "normflows.csv").unlink(missing_ok=True)
    # data -> latent is normflows' inverse; the pair of callables is all the adapter needs
    monitor = Monitor((model.inverse, model.forward), data, every=every, scales=scales,
                      log=out / "normflows.csv", run="normflows-realnvp")
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    nonfinite_loss = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumericalInvertibilityWarning)
        for step in range(steps):
            monitor.step(step)
            loss = model.forward_kld(data[torch.randint(0, len(data), (256,), generator=generator)])
            if not torch.isfinite(loss):
                nonfinite_loss = step
                break
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    monitor.close()
    result = report("normflows RealNVP", monitor, nonfinite_loss=nonfinite_loss)
    events = {"first non-finite loss": nonfinite_loss} if nonfinite_loss is not None else {}
    monitor.plot(out / "normflows.png", events=events,
                 title=f"normflows RealNVP ({len(couplings)} affine couplings, exp scales) on two moons, "
                       f"Adam lr {lr:g}, checks every {every} steps")
    return result


def report(label: str, monitor: Monitor, *, explosion: int | None = None, nonfinite_loss: int | None = None) -> dict:
    alarm = monitor.first_alarm
    line = {"run": label, "first_warning": alarm.step if alarm else None, "rule": alarm.rule if alarm else "-",
            "layer": alarm.layer if alarm else "-", "explosion": explosion, "first_nonfinite_loss": nonfinite_loss,
            "checks": monitor.checks, "monitor_seconds": round(monitor.seconds, 2)}
    broke = [s for s in (explosion, nonfinite_loss) if s is not None]
    line["margin_steps"] = (min(broke) - alarm.step) if (alarm and broke) else None
    print(" | ".join(f"{k} {v}" for k, v in line.items()))
    if alarm:
        print("   ", alarm.message)
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="monitor-demo", help="folder for the logs and figures")
    parser.add_argument("--steps", type=int, default=20 if SMOKE else 1500, help="regression2d training steps")
    parser.add_argument("--lr", type=float, default=1e-3, help="regression2d Adam learning rate")
    parser.add_argument("--nf-coeff", type=float, default=1e-3, help="regression2d NF regulariser coefficient")
    parser.add_argument("--every", type=int, default=25, help="regression2d: check every k steps")
    parser.add_argument("--nf-every", type=int, default=10, help="normflows: check every k steps")
    parser.add_argument("--nf-steps", type=int, default=20 if SMOKE else 400, help="normflows training steps")
    parser.add_argument("--nf-lr", type=float, default=3e-3, help="normflows Adam learning rate")
    parser.add_argument("--skip", choices=("regression2d", "normflows"), help="leave one demonstration out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.skip != "regression2d":
        regression_demo(out, args.steps, args.every, args.lr, args.nf_coeff)
    if args.skip != "normflows":
        normflows_demo(out, args.nf_steps, args.nf_every, args.nf_lr)
    print(f"wrote logs and figures to {out}/ in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
