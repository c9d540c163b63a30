#!/usr/bin/env bash
# The authors' sizes on a CUDA GPU through the torch backend: `lipflow reproduce checkerboard
# --full --backend torch --device cuda` (100 blocks, widths 128 x 4, 50 000 steps, grid step
# 0.05), writing the same checkerboard.csv / checkerboard_grid.csv / checkerboard.png as the CPU
# run, then `lipflow reproduce classifier --full --backend torch --device cuda` (Table 2). Each
# experiment gets a wall-clock cap (CAP_S for the checkerboard, CAP_CLASSIFIER_S for the
# classifier; 14 min in all by default) so the script stays inside a 15-minute GPU budget; a run
# that hits its cap writes nothing (results are written atomically at the end), and the log
# says so.
#
#   bash benchmarks/full_gpu.sh            # OUT=gpu-full, CAP_S=540, CAP_CLASSIFIER_S=300
set -uo pipefail
out="${OUT:-gpu-full}"
cap="${CAP_S:-540}"
cap_classifier="${CAP_CLASSIFIER_S:-300}"
mkdir -p "$out"
python - <<'PY' | tee "$out/device.txt"
import torch
assert torch.cuda.is_available(), "no CUDA device: this script needs a GPU"
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))
PY
start=$(date +%s)
timeout "$cap" python -m lipflow reproduce checkerboard --full --backend torch --device cuda \
    --out "$out/checkerboard" --no-progress 2>&1 | tee "$out/checkerboard.log"
status=${PIPESTATUS[0]}
echo "checkerboard --full: exit $status after $(( $(date +%s) - start )) s (124 = hit the ${cap} s cap)" \
    | tee -a "$out/summary.txt"
start=$(date +%s)
timeout "$cap_classifier" python -m lipflow reproduce classifier --full --backend torch --device cuda \
    --out "$out/classifier" --no-progress 2>&1 | tee "$out/classifier.log"
status=${PIPESTATUS[0]}
echo "classifier --full: exit $status after $(( $(date +%s) - start )) s (124 = hit the ${cap_classifier} s cap)" \
    | tee -a "$out/summary.txt"
