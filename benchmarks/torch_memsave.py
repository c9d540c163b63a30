"""Memory-saving backprop in torch: peak memory against depth, and time against ordinary backprop.

Targets (issue 7): peak memory of memory-saving backprop at depth 64 <= 1.2x its peak at depth 8,
and its step time <= 1.5x that of ordinary backprop at the same depth.

Model: an exported lipflow flow of affine couplings (sigmoid(s + 2) scales, MLP conditioners),
alternating halves, float32; one training step = forward, NF loss, backward (memory-saving:
``memory_saving_forward(..., accumulate_grad=True)``, parameter gradients pre-allocated).

How memory is measured:
* CPU: each (depth, mode) runs in a fresh Python process; the figure is the growth of the
  process's peak resident set size (``resource.getrusage(...).ru_maxrss``) during one step over
  its value just before the step (model and batch already allocated, one warm-up step at a tiny
  batch done). The workers run with ``MALLOC_MMAP_THRESHOLD_=65536``: glibc then serves every
  tensor buffer above 64 KiB by mmap and returns it on free, so the resident set follows the
  live tensors (with glibc's default adaptive threshold, freed buffers stay in the heap and the
  peak grows with the number of blocks even when the live memory does not).
* CUDA: ``torch.cuda.max_memory_allocated`` during the step minus the allocation before it.
* Both: the bytes of tensors autograd saves for backward (counted with
  ``torch.autograd.graph.saved_tensors_hooks``), the part that grows with depth.

Run: python benchmarks/torch_memsave.py [--device auto] [--batch 1024] [--dim 64] [--hidden 256]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

DEPTHS = (8, 64)


def build(depth: int, dim: int, hidden: int, device: str):
    import torch

    import lipflow
    from lipflow.interop.torch import to_torch

    blocks = [
        lipflow.AffineCoupling(
            dim,
            conditioning="first" if i % 2 == 0 else "second",
            scale=lipflow.Sigmoid(shift=2.0),
            t=lipflow.MLP((hidden,), "relu", init_scale=0.1),
            s=lipflow.MLP((hidden,), "relu", init_scale=0.1),
        )
        for i in range(depth)
    ]
    flow = lipflow.Flow(blocks)
    return to_torch(flow, flow.init(0), dtype=torch.float32, device=device)


def step(module, x, memory_saving: bool) -> None:
    from lipflow.interop.torch import memory_saving_forward, nf_loss

    z, logdet = (
        memory_saving_forward(module, x, accumulate_grad=True) if memory_saving else module.forward_and_logdet(x)
    )
    nf_loss(z, logdet).backward()


def saved_bytes(module, x, memory_saving: bool) -> int:
    import torch

    storages: dict[int, int] = {}

    def pack(tensor):  # count each storage once (one tensor is often saved by several ops)
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        from lipflow.interop.torch import memory_saving_forward, nf_loss

        z, logdet = (
            memory_saving_forward(module, x, accumulate_grad=True) if memory_saving else module.forward_and_logdet(x)
        )
        loss = nf_loss(z, logdet)
    loss.backward()
    return sum(storages.values())


def measure_memory(depth: int, memory_saving: bool, args: argparse.Namespace) -> dict:
    """Peak memory growth of one training step (run in a fresh process on CPU)."""
    import resource

    import torch

    from lipflow.interop.torch import resolve_device

    device = resolve_device(args.device)
    torch.manual_seed(0)
    module = build(depth, args.dim, args.hidden, str(device))
    step(module, torch.randn(2, args.dim, device=device), memory_saving)  # warm-up at a tiny batch
    module.zero_grad(set_to_none=False)
    x = torch.randn(args.batch, args.dim, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step(module, x, memory_saving)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        source = "torch.cuda.max_memory_allocated"
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step(module, x, memory_saving)
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
        source = "ru_maxrss growth (fresh process)"
    module.zero_grad(set_to_none=True)
    return {"peak_bytes": int(peak), "saved_bytes": saved_bytes(module, x, memory_saving), "source": source}


def measure_time(depth: int, args: argparse.Namespace) -> dict[str, float]:
    """Median step time of ordinary and memory-saving backprop, measured in alternation."""
    import torch

    from lipflow.interop.torch import resolve_device

    device = resolve_device(args.device)
    module = build(depth, args.dim, args.hidden, str(device))
    x = torch.randn(args.time_batch, args.dim, device=device)
    times: dict[str, list[float]] = {"ordinary": [], "memory_saving": []}
    for repeat in range(args.repeats + 1):
        for mode in ("ordinary", "memory_saving"):
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            step(module, x, mode == "memory_saving")
            if device.type == "cuda":
                torch.cuda.synchronize()
            if repeat:  # the first round warms up
                times[mode].append(time.perf_counter() - started)
            module.zero_grad(set_to_none=True)
    return {mode: statistics.median(values) for mode, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=1024, help="batch for the memory measurement")
    parser.add_argument("--time-batch", type=int, default=256, help="batch for the timing")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: no oversubscription)")
    parser.add_argument("--worker", nargs=2, metavar=("DEPTH", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.worker:
        depth, mode = int(args.worker[0]), args.worker[1]
        print(json.dumps(measure_memory(depth, mode == "memory_saving", args)))
        return
    from lipflow.interop.torch import resolve_device

    device = resolve_device(args.device)
    print(
        f"device {device}, torch {torch.__version__}, {args.threads} CPU thread(s), float32, "
        f"d={args.dim}, hidden={args.hidden}, memory batch {args.batch}, time batch {args.time_batch}"
    )
    results: dict[tuple[int, str], dict] = {}
    for depth in DEPTHS:
        for mode in ("ordinary", "memory_saving"):
            if device.type == "cuda":
                results[depth, mode] = measure_memory(depth, mode == "memory_saving", args)
            else:
                command = [
                    sys.executable,
                    __file__,
                    "--worker",
                    str(depth),
                    mode,
                    "--device",
                    args.device,
                    "--batch",
                    str(args.batch),
                    "--dim",
                    str(args.dim),
                    "--hidden",
                    str(args.hidden),
                ]
                command += ["--threads", str(args.threads)]
                env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
                output = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
                results[depth, mode] = json.loads(output.strip().splitlines()[-1])
            r = results[depth, mode]
            print(
                f"depth {depth:3d} {mode:<14} peak {r['peak_bytes'] / 2**20:9.1f} MiB  "
                f"saved for backward {r['saved_bytes'] / 2**20:9.1f} MiB  [{r['source']}]",
                flush=True,
            )
    for mode in ("ordinary", "memory_saving"):
        peak = results[64, mode]["peak_bytes"] / max(results[8, mode]["peak_bytes"], 1)
        saved = results[64, mode]["saved_bytes"] / max(results[8, mode]["saved_bytes"], 1)
        target = "  (target <= 1.2)" if mode == "memory_saving" else ""
        print(f"{mode:<14} depth 64 / depth 8: peak {peak:.2f}x, saved tensors {saved:.2f}x{target}")
    timing = measure_time(64, args)
    print(
        f"depth 64 step time: ordinary {timing['ordinary'] * 1e3:.1f} ms, memory-saving "
        f"{timing['memory_saving'] * 1e3:.1f} ms, ratio {timing['memory_saving'] / timing['ordinary']:.2f}x "
        "(target <= 1.5)"
    )


if __name__ == "__main__":
    main()
