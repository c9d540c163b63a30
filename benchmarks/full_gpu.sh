#!/usr/bin/env bash
# The authors' sizes on a CUDA GPU through the torch backend: `lipflow reproduce checkerboard
# --full --backend torch --device cuda` (100 blocks, widths 128 x 4, 50 000 steps, grid step
# 0.05), writing the same checkerboard.csv / checkerboard_grid.csv / checkerboard.png as the CPU
# run, then `lipflow reproduce classifier --full --backend torch --device cuda` (Table 2).
# Budget hours, not minutes: the checkerboard's 100 small blocks are bound by kernel launches,
# and on an H100 a training step at the default widths took 0.29 s (twice one CPU core's
# time), so 50 000 steps take about 4 hours per model. CAP_S and CAP_CLASSIFIER_S cap each
# experiment's wall-clock seconds (0, the default, means no cap); a run that hits its cap
# writes nothing (results are written atomically at the end), and the log says so.
#
#   bash benchmarks/full_gpu.sh            # OUT=gpu-full, CAP_S=0, CAP_CLASSIFIER_S=0
set -uo pipefail
out="${OUT:-gpu-full}"
cap="${CAP_S:-0}"
cap_classifier="${CAP_CLASSIFIER_S:-0}"
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
echo "checkerboard --full: exit $status after $(( $(date +%s) - start )) s (124 = hit the cap of ${cap} s)" \
    | tee -a "$out/summary.txt"
start=$(date +%s)
timeout "$cap_classifier" python -m lipflow reproduce classifier --full --backend torch --device cuda \
    --out "$out/classifier" --no-progress 2>&1 | tee "$out/classifier.log"
status=${PIPESTATUS[0]}
echo "classifier --full: exit $status after $(( $(date +%s) - start )) s (124 = hit the cap of ${cap_classifier} s)" \
    | tee -a "$out/summary.txt"
