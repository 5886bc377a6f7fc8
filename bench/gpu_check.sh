#!/usr/bin/env bash
# Issue 7's GPU check, in one call on a machine with one GPU (about 8 minutes on an H100/H200):
#   1. R50 voc0712 recipe on full-size synthetic VOC, 100 iterations: launch.py vs bare detectron2, and with
#      +experiment=amp (detectron2's AMPTrainer): s/iter of each and the ratios;
#   2. the VOC evaluator comparison (xfer vs detectron2) at VOC07-test scale on the same machine.
# Usage: bash bench/gpu_check.sh [OUT_DIR]   (writes its logs there; default: a temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
python -c "import torch; assert torch.cuda.is_available(), 'no GPU visible'; print(torch.cuda.get_device_name(0))" | tee "$out/device.txt"
python bench/train_speed.py --benchmark voc0712_c4_24k --iters 100 --repeats 1 --amp --work "$out/train" 2>&1 | tee "$out/train_speed.txt"
python bench/eval_speed.py --repeats 3 2>&1 | tee "$out/eval_speed.txt"
