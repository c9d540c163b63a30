#!/usr/bin/env bash
# GPU checks of the torch bridge, sized to fit a 10-minute slot on one GPU: the FD regulariser's
# overhead on CUDA (the run_all size, the paper's image size, and a batch large enough to keep
# the GPU busy), the gpu-marked tests, the memory-saving benchmark, and the checkerboard
# experiment at its default sizes on CUDA. Each part has its own wall-clock cap (seconds, in the
# CAP_* variables) and the parts run in order of importance, so a slow part never hides the
# ones after it; the summary says which part hit its cap (exit 124).
# Run from the repository root on a machine with CUDA and lipflow (or its source on PYTHONPATH)
# with the torch extra:  bash benchmarks/torch_gpu_check.sh     (logs under ${OUT:-gpu-check}/)
set -uo pipefail
out="${OUT:-gpu-check}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"
"$py" - <<'PY' 2>&1 | tee "$out/device.txt"
import os, platform, torch
assert torch.cuda.is_available(), "no CUDA device: these checks need a GPU"
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0),
      "| host cores", os.cpu_count(), "| python", platform.python_version())
PY
[ "${PIPESTATUS[0]}" = 0 ] || exit 1

part() {  # part NAME CAP COMMAND...: run with a cap, log to $out/NAME.txt, record the exit status
    local name=$1 cap=$2 started
    shift 2
    started=$(date +%s)
    echo "== $name (cap ${cap} s): $*" | tee "$out/$name.txt"
    timeout "$cap" "$@" 2>&1 | tee -a "$out/$name.txt"
    echo "$name: exit ${PIPESTATUS[0]} after $(( $(date +%s) - started )) s" | tee -a "$out/summary.txt"
}

fd="benchmarks/torch_fd_overhead.py --device cuda --rounds 5 --steps 10"
part fd_runall "${CAP_FD:-60}" "$py" $fd --batch 32
part fd_paper "${CAP_FD:-60}" "$py" $fd --size 32 --batch 64 --levels 3 --steps-per-level 8 --hidden 256
part fd_paper_memsave "${CAP_FD:-60}" "$py" $fd --size 32 --batch 64 --levels 3 --steps-per-level 8 \
    --hidden 256 --memory-saving
part fd_large_batch "${CAP_FD:-60}" "$py" $fd --size 32 --batch 512 --levels 3 --steps-per-level 8 --hidden 256
part pytest_gpu "${CAP_TESTS:-90}" "$py" -m pytest tests/test_interop_torch.py -m gpu -q -rs -p no:cacheprovider
part memsave "${CAP_MEMSAVE:-45}" "$py" benchmarks/torch_memsave.py --device cuda --batch 8192 --time-batch 8192 \
    --dim 256 --hidden 1024
part checkerboard "${CAP_CHECKERBOARD:-150}" "$py" -m lipflow reproduce checkerboard --backend torch --device cuda \
    --jobs 3 --no-progress --out "$out/checkerboard"
cat "$out/summary.txt"
