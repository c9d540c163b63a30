#!/usr/bin/env bash
# GPU checks of the torch bridge: the gpu-marked tests, both torch benchmarks on CUDA, and a
# short GPU-size run of the Glow classifier example. Run from the repository root on a machine
# with CUDA and lipflow installed with the torch extra:  bash benchmarks/torch_gpu_check.sh
# Writes its logs under ${OUT:-gpu-check}/.
set -euo pipefail
out="${OUT:-gpu-check}"
mkdir -p "$out"
python - <<'PY' | tee "$out/device.txt"
import torch
assert torch.cuda.is_available(), "no CUDA device: these checks need a GPU"
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))
PY
python -m pytest tests/test_interop_torch.py -m gpu -q -rs 2>&1 | tee "$out/pytest-gpu.txt"
python benchmarks/torch_memsave.py --device cuda --batch 8192 --time-batch 8192 --dim 256 --hidden 1024 \
    2>&1 | tee "$out/memsave.txt"
python benchmarks/torch_fd_overhead.py --device cuda --size 32 --batch 64 --levels 3 --steps-per-level 8 \
    --hidden 256 --rounds 5 --steps 10 2>&1 | tee "$out/fd_overhead.txt"
python benchmarks/torch_fd_overhead.py --device cuda --size 32 --batch 64 --levels 3 --steps-per-level 8 \
    --hidden 256 --rounds 5 --steps 10 --memory-saving 2>&1 | tee "$out/fd_overhead_memsave.txt"
for coupling in additive affine; do
    python examples/torch_glow_classifier.py --device cuda --image-size 32 --n-train 4096 --levels 3 \
        --steps-per-level 8 --hidden 128 --batch-size 64 --iterations 600 --log-every 200 \
        --coupling "$coupling" --lanczos-steps 32 --out "$out/glow_$coupling.json" 2>&1 | tee "$out/glow_$coupling.txt"
done
