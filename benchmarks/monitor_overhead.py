"""Overhead of the training monitor at every=50: monitored vs unmonitored training steps.

Models: the regression2d Glow flow (lipflow, NumPy/autograd; 12 steps of ActNorm, reverse,
affine coupling; 128 full-batch pairs; checks in float32) and, with torch and normflows
installed, a normflows RealNVP (16 affine couplings, batch 256, float32). Each round trains
``every`` steps without the monitor, then ``every`` steps calling ``monitor.step`` at each
(one check per round, the per-layer attribution on every 10th check, as the defaults), on the
same model, in alternating order, so machine load hits both alike. Prints per model the ratio
of monitored to unmonitored time (total over the rounds, and the median of the per-round
ratios) and the share the checks alone account for (their measured time over the steps');
target: ratio <= 1.10 at every=50.

Run: python benchmarks/monitor_overhead.py [--rounds 10] [--every 50]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np


def rounds(train_step: Callable[[int], None], monitor_step: Callable[[int], None], every: int, count: int) -> tuple:
    """Per-round seconds of ``every`` plain and ``every`` monitored steps; the order alternates
    (plain first in even rounds, monitored first in odd ones) so a drifting load cancels."""
    plain, watched, step = [], [], 0

    def block(monitored: bool) -> float:
        nonlocal step
        start = time.perf_counter()
        for _ in range(every):
            if monitored:
                monitor_step(step)
            train_step(step)
            step += 1
        return time.perf_counter() - start

    for index in range(count + 1):  # the first round warms up and is dropped
        if index % 2:
            watched.append(block(True))
            plain.append(block(False))
        else:
            plain.append(block(False))
            watched.append(block(True))
    return plain[1:], watched[1:]


def lipflow_model(every: int, attribution_every: int):
    from autograd import value_and_grad

    from lipflow.experiments.data import regression_pairs
    from lipflow.experiments.regression2d import RegressionConfig, build_flow, make_objective
    from lipflow.monitor import Monitor
    from lipflow.train.adam import AdamConfig, adam_init, adam_update

    config = RegressionConfig(flow_steps=12, lr=1e-3)
    x, y = regression_pairs(config.n_train, np.random.default_rng(0))
    flow = build_flow(config)
    state = {"params": flow.init(0)}
    state["adam"] = adam_init(state["params"])
    loss_and_grad = value_and_grad(make_objective(flow, "none", config, x, y))
    adam = AdamConfig(lr=config.lr)
    monitor = Monitor(flow, x, params=state["params"], ctx="float32", every=every,
                      attribution_every=attribution_every, on_alarm="record")

    def train_step(step: int) -> None:
        _, grads = loss_and_grad(state["params"], None, step)
        state["params"], state["adam"] = adam_update(state["params"], grads, state["adam"], adam)

    return "regression2d Glow (lipflow, 12 steps, d=2)", train_step, lambda s: monitor.step(s, state["params"]), monitor


def normflows_model(every: int, attribution_every: int):
    import normflows as nf
    import torch
    from sklearn.datasets import make_moons

    from lipflow.monitor import Monitor

    torch.manual_seed(0)
    data = torch.tensor(make_moons(2000, noise=0.05, random_state=0)[0], dtype=torch.float32)
    blocks = []
    for _ in range(16):
        blocks += [nf.flows.AffineCouplingBlock(nf.nets.MLP([1, 32, 32, 2], init_zeros=True)),
                   nf.flows.Permute(2, mode="swap")]
    model = nf.NormalizingFlow(nf.distributions.base.DiagGaussian(2, trainable=False), blocks)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    monitor = Monitor((model.inverse, model.forward), data, every=every, attribution_every=attribution_every,
                      on_alarm="record")

    def train_step(step: int) -> None:
        loss = model.forward_kld(data[torch.randint(0, len(data), (256,), generator=generator)])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    return "normflows RealNVP (torch, 16 couplings, d=2)", train_step, monitor.step, monitor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds per model (after one warm-up)")
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--attribution-every", type=int, default=10)
    args = parser.parse_args()
    builders = [lipflow_model]
    try:
        import normflows  # noqa: F401
        import sklearn  # noqa: F401
        import torch

        torch.set_num_threads(1)
        builders.append(normflows_model)
    except ImportError as error:
        print(f"(normflows model skipped: {error})")
    print(f"{'model':<46} {'step ms':>8} {'check ms':>9} {'ratio (total)':>14} {'ratio (median)':>15} "
          f"{'check share':>12}")
    for build in builders:
        name, train_step, monitor_step, monitor = build(args.every, args.attribution_every)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plain, watched = rounds(train_step, monitor_step, args.every, args.rounds)
        ratio = sum(watched) / sum(plain)
        median = statistics.median(w / p for w, p in zip(watched, plain, strict=True))
        step_ms = 1000 * sum(plain) / (args.every * args.rounds)
        check_ms = 1000 * monitor.seconds / max(monitor.checks, 1)
        share = check_ms / (args.every * step_ms)
        print(f"{name:<46} {step_ms:>8.2f} {check_ms:>9.1f} {ratio:>14.3f} {median:>15.3f} {share:>12.3f}")
    print(f"every={args.every}, {args.rounds} rounds of {args.every} plain + {args.every} monitored steps "
          "(alternating order); ratio = monitored / unmonitored time; check share = mean check time / "
          f"({args.every} x mean step time), the overhead the checks alone account for")


if __name__ == "__main__":
    main()
