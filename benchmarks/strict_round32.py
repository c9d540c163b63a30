"""What strict binary16 / bfloat16 arithmetic in float32 storage would cost, per element.

Times, on arrays of ``--size`` elements, one float32 addition, one addition in NumPy's float16
and ml_dtypes' bfloat16 (the strict contexts' storage today), the float32 -> float16 conversion,
and one float32 addition followed by the bit-level rounding of
:mod:`lipflow.precision.strict_round32` (the float32-storage alternative), each as ns per element
and relative to the float32 addition (best of ``--repeats`` CPU times).

Run: python benchmarks/strict_round32.py [--size 32000] [--repeats 7]
"""

from __future__ import annotations

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import header  # noqa: E402

from lipflow.precision.floats import FLOAT_FORMATS  # noqa: E402
from lipflow.precision.strict_round32 import round_to_format  # noqa: E402


def best_ns(run, size: int, repeats: int, inner: int = 20) -> float:
    best = float("inf")
    run()
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(inner):
            run()
        best = min(best, (time.process_time() - start) / inner)
    return best * 1e9 / size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    header("strict rounding in float32 storage: cost per element")
    rng = np.random.default_rng(0)
    a32, b32 = rng.standard_normal(args.size).astype(np.float32), rng.standard_normal(args.size).astype(np.float32)
    bf16 = FLOAT_FORMATS["bfloat16"][0]
    a16, b16 = a32.astype(np.float16), b32.astype(np.float16)
    abf, bbf = a32.astype(bf16), b32.astype(bf16)
    rows = [
        ("float32 add", lambda: a32 + b32),
        ("float16 add (NumPy)", lambda: a16 + b16),
        ("bfloat16 add (ml_dtypes)", lambda: abf + bbf),
        ("float32 -> float16 astype", lambda: a32.astype(np.float16)),
        ("float32 add + round to float16 bits", lambda: round_to_format(a32 + b32, "float16")),
        ("float32 add + round to bfloat16 bits", lambda: round_to_format(a32 + b32, "bfloat16")),
    ]
    base = None
    print(f"{'operation':<40}{'ns/element':>12}{'x float32 add':>15}")
    for name, run in rows:
        ns = best_ns(run, args.size, args.repeats)
        base = base or ns
        print(f"{name:<40}{ns:>12.2f}{ns / base:>15.1f}")


if __name__ == "__main__":
    main()
