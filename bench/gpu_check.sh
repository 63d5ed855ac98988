#!/usr/bin/env bash
# The device seam on a real GPU: the suite's device tests, then the paper-scale benchmark on CUDA
# in float32 and in bf16, then one short `jifr train` + `jifr evaluate` on CUDA.
#
#   bash bench/gpu_check.sh [WORK_DIR]      (default runs/bench; the paper-scale set is made there once)
#
# Exits non-zero where this machine has no CUDA GPU. Prints every figure the README records.
set -euo pipefail
cd "$(dirname "$0")/.."
work_dir="${1:-runs/bench}"
python - <<'EOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"no CUDA GPU here (torch {torch.__version__}): nothing to check")
print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF
python -m pytest -q tests/test_device.py
for precision in fp32 bf16; do
  python bench/bench_paper_scale.py --work-dir "$work_dir" --steps 20 --device cuda --precision "$precision"
done
run_dir="$(mktemp -d)/run"
jifr train "$work_dir/paper-prepared" --out "$run_dir" --model jifr --epochs 1 --device cuda --precision bf16 --no-progress
jifr evaluate "$run_dir" --protocol item_full --device cuda
