"""Cost of the bi-directional FD regulariser relative to unregularised training (torch).

Paper (App. G, Table 11): FD training costs 1.26x unregularised training (and, applied every
10 steps, bi-directional FD costs 1.06x inverse-only FD). Targets here, for bi-directional FD
on the full batch every step with the clean and perturbed forward in one batched pass
(``fd-batched``, ``lipflow.interop.torch.fd_forward_and_penalty``): <= 1.6x on CPU, <= 1.3x on
a GPU.

One training step of a Glow-like INN classifier (lipflow.interop.torch_glow: squeeze, ActNorm,
1x1 convolution, affine coupling; linear head on channel means; Adam) on random images, timed
for: no regulariser, bi-directional FD every step (separate passes, and ``fd-batched``: one
batched forward pass for clean and perturbed inputs), FD every 10th step, inverse-only FD
every step, and FD every step on a quarter of the batch (``samples=n/4``: the penalty is a
random estimate anyway, and its extra passes shrink with the samples). Rounds alternate
between the variants (>= 5 timed rounds) and the best per-step time is reported (CPU time of
this process on a CPU, synchronised wall time on a GPU), so machine load affects all alike.
``--memory-saving`` trains with memory-saving backprop (as the paper's FD runs did).

Run: python benchmarks/torch_fd_overhead.py [--device auto] [--size 16] [--batch 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Target, header, print_targets

VARIANTS = ("none", "fd", "fd-batched", "fd-batched-quarter", "fd-quarter-batch", "fd-every-10", "inverse-fd")


def main() -> None:
    args = parse(sys.argv[1:])
    from lipflow.errors import LipflowError
    from lipflow.interop.torch import resolve_device

    try:
        gpu = resolve_device(args.device).type == "cuda"
    except LipflowError as error:
        sys.exit(f"torch_fd_overhead.py: error: {error}")
    header("FD regulariser overhead: one training step of a Glow-like classifier, per variant",
           timing="synchronised wall time on the GPU" if gpu else "CPU time of this process")
    print_targets(measure(args))


def targets(quick: bool = False) -> list[Target]:
    variants = ("none", "fd", "fd-batched", "fd-batched-quarter", "fd-every-10")
    return measure(parse(["--rounds", "5", "--steps", "10", "--batch", "16" if quick else "32"]), verbose=False,
                   variants=variants)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=16, help="image height and width")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--levels", type=int, default=2)
    parser.add_argument("--steps-per-level", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds, at least 5 (after one warm-up round)")
    parser.add_argument("--steps", type=int, default=10,
                        help="training steps per variant and round, a multiple of 10 (so that fd-every-10 runs at "
                             "its rate in every round)")
    parser.add_argument("--memory-saving", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    if args.steps < 10 or args.steps % 10:
        parser.error(f"--steps must be a positive multiple of 10 (got {args.steps}): fd-every-10 regularises "
                     "one step in ten, so a round of other lengths would time it at another rate")
    args.rounds = max(args.rounds, 5)
    return args


def measure(args: argparse.Namespace, verbose: bool = True, variants: tuple[str, ...] = VARIANTS) -> list[Target]:
    import torch

    from lipflow.interop.torch import (
        fd_forward_and_penalty,
        fd_penalty,
        measurement_mode,
        memory_saving_forward,
        resolve_device,
    )
    from lipflow.interop.torch_glow import glow_flow

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    flow, channels = glow_flow(3, levels=args.levels, steps_per_level=args.steps_per_level, hidden=args.hidden)
    flow = flow.to(device)
    head = torch.nn.Linear(channels, 10).to(device)
    optimiser = torch.optim.Adam([*flow.parameters(), *head.parameters()], lr=1e-4)
    images = torch.rand(args.batch, 3, args.size, args.size, device=device)
    labels = torch.randint(0, 10, (args.batch,), device=device)
    flow.data_init(images)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_step(variant: str, step: int) -> None:
        if variant.startswith("fd-batched") and not args.memory_saving:
            samples = max(1, args.batch // 4) if variant == "fd-batched-quarter" else None
            z, penalty = fd_forward_and_penalty(flow, flow.inverse, images, samples=samples)
            loss = loss_fn(head(z.mean(dim=(2, 3))), labels) + penalty
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            return
        if args.memory_saving:
            z, _ = memory_saving_forward(flow, images, accumulate_grad=True)
        else:
            z = flow(images)
        loss = loss_fn(head(z.mean(dim=(2, 3))), labels)
        if variant.startswith("fd-batched") or variant == "fd" or (variant == "fd-every-10" and step % 10 == 0):
            loss = loss + fd_penalty(flow, flow.inverse, images, z=z)
        elif variant == "fd-quarter-batch":
            loss = loss + fd_penalty(flow, flow.inverse, images, z=z, samples=max(1, args.batch // 4))
        elif variant == "inverse-fd":
            loss = loss + fd_penalty(flow, flow.inverse, images, z=z, forward_coeff=0.0)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    def synchronise() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    clock = time.perf_counter if device.type == "cuda" else time.process_time
    times: dict[str, list[float]] = {v: [] for v in variants}
    with measurement_mode():
        for round_index in range(args.rounds + 1):
            for variant in variants:
                synchronise()
                started = clock()
                for step in range(args.steps):
                    train_step(variant, step)
                synchronise()
                if round_index:  # round 0 warms up
                    times[variant].append((clock() - started) / args.steps)
        parts = pass_costs(flow, head, images, labels, loss_fn, args.rounds, clock, synchronise) if verbose else {}
    best = {v: min(t) for v, t in times.items()}
    median = {v: statistics.median(t) for v, t in times.items()}
    backprop = "memory-saving" if args.memory_saving else "ordinary"
    if verbose:
        print(
            f"device {device}, torch {torch.__version__}, images 3x{args.size}x{args.size}, batch {args.batch}, "
            f"{len(flow.blocks)} layers, hidden {args.hidden}, {backprop} backprop, {args.threads} CPU thread(s), "
            f"{'wall' if device.type == 'cuda' else 'CPU'} time per step, best (median) of {args.rounds} rounds"
        )
        for variant in variants:
            print(f"{variant:<19} {best[variant] * 1e3:9.1f} ms/step ({median[variant] * 1e3:.1f})  "
                  f"ratio to none {best[variant] / best['none']:.2f}x ({median[variant] / median['none']:.2f}x)")
        if "inverse-fd" in best:
            print(f"bi-directional / inverse-only FD, every step: {best['fd'] / best['inverse-fd']:.2f}x")
        if parts:
            floor = (parts["forward+backward, 2n"] + parts["inverse+backward, n"]) / parts["forward+backward, n"]
            print("where the time goes (ms per pass, best of rounds; the penalty is a forward pass on the perturbed "
                  "batch and an inverse pass, both differentiated):")
            for name, value in parts.items():
                print(f"  {name:<24} {value * 1e3:9.1f}")
            step = parts["forward+backward, n"]
            print(f"  full-batch bi-directional FD predicted from its parts (an estimate): (forward+backward on 2n + "
                  f"inverse+backward on n) / (forward+backward on n) = {floor:.2f}x = 1 + "
                  f"{(parts['forward+backward, 2n'] - step) / step:.2f} (the doubled forward's extra) + "
                  f"{parts['inverse+backward, n'] / step:.2f} (the differentiated inverse pass); batching the clean "
                  f"and perturbed forward saves launches and per-call overhead, never the inverse pass")
    limit = 1.3 if device.type == "cuda" else 1.6
    ratio = {v: best[v] / best["none"] for v in variants}
    detail = (f"two separate passes {ratio['fd']:.2f}x, quarter batch {ratio['fd-batched-quarter']:.2f}x, "
              f"every 10 steps {ratio['fd-every-10']:.2f}x")
    if args.memory_saving:
        detail += "; memory-saving backprop: fd-batched runs ordinary backprop"
    return [Target(f"FD every step (batched pass) / none, {device.type}", best["fd-batched"] / best["none"], limit,
                   detail=detail)]


def pass_costs(flow, head, images, labels, loss_fn, rounds: int, clock, synchronise) -> dict[str, float]:
    """Best time of each pass the FD step is made of: forward and backward on the batch (n) and
    on twice the batch (the clean and the perturbed inputs), and the inverse with its backward."""
    import torch

    doubled = torch.cat([images, images + 1e-3 * torch.randn_like(images)])

    def forward_backward(x: torch.Tensor) -> None:
        z = flow(x)
        loss_fn(head(z.mean(dim=(2, 3))), labels.repeat(len(x) // len(labels))).backward()

    with torch.no_grad():
        z = flow(images)  # the training step has z already: not part of the inverse's cost

    def inverse_backward() -> None:
        back = flow.inverse(z + 1e-3 * torch.randn_like(z))
        torch.sum((back - images) ** 2).backward()

    jobs = {"forward, n": lambda: flow(images), "forward+backward, n": lambda: forward_backward(images),
            "forward+backward, 2n": lambda: forward_backward(doubled), "inverse+backward, n": inverse_backward}
    best = {name: float("inf") for name in jobs}
    for _ in range(rounds + 1):
        for name, job in jobs.items():
            flow.zero_grad(set_to_none=True)
            head.zero_grad(set_to_none=True)
            synchronise()
            started = clock()
            if name == "forward, n":
                with torch.no_grad():
                    job()
            else:
                job()
            synchronise()
            best[name] = min(best[name], clock() - started)
    flow.zero_grad(set_to_none=True)
    head.zero_grad(set_to_none=True)
    return best


if __name__ == "__main__":
    main()
