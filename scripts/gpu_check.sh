#!/usr/bin/env bash
# GPU readiness in one command, on a CUDA machine with the test extras installed (README's test command):
#   bash scripts/gpu_check.sh [OUT_DIR]        (default OUT_DIR: gpu-check/; about 10 minutes on one GPU)
# 1. the CUDA tests (the attack and distortion tests marked for a GPU, which skip on a CPU machine);
# 2. the attack benchmark at a real detector's native size: xception at 299 px, ours (fp32, bf16, fp16) against torchattacks
#    and a bare forward+backward loop (scripts/bench_attacks.py; ratios, measured in one process);
# 3. the detectors' throughput on CUDA (scripts/bench_detectors.py);
# 4. one full cell end to end on the GPU (train, attack, probes, record): tiny-cnn + AT under APGD;
# and prints the figures (also written to OUT_DIR/*.txt and OUT_DIR/cell.json) for docs/gpu.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu-check}"
mkdir -p "$out"
py=.venv/bin/python
cli=.venv/bin/afsl-bench
if ! "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: torch sees no CUDA GPU here (torch.cuda.is_available() is False); run it on a GPU machine" >&2
    exit 2
fi
"$py" - <<'PY' | tee "$out/device.txt"
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, "
      f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
PY
echo "== 1. CUDA tests" | tee "$out/tests.txt"
"$py" -m pytest -q -p no:cacheprovider tests/test_attacks.py tests/test_distortions.py -k cuda 2>&1 | tail -5 | tee -a "$out/tests.txt"
echo "== 2. attacks at 299 px (xception), ours vs torchattacks vs a bare loop" | tee "$out/attacks.txt"
"$py" scripts/bench_attacks.py --detector xception --resolution 299 --batch 32 --repeats 5 --device cuda \
    --skip art --precisions bf16 fp16 2>&1 | tee -a "$out/attacks.txt"
echo "== 3. detectors on CUDA" | tee "$out/detectors.txt"
"$py" scripts/bench_detectors.py 2>&1 | tee -a "$out/detectors.txt"
echo "== 4. one full cell on the GPU" | tee "$out/cell.txt"
start=$(date +%s)
"$cli" run --detector tiny-cnn --defense at --attack apgd --dataset synthetic --device cuda \
    --results-dir "$out/results" --json > "$out/cell.json"
"$py" - "$out/cell.json" "$(( $(date +%s) - start ))" <<'PY' | tee -a "$out/cell.txt"
import json, sys
record, wall = json.load(open(sys.argv[1])), sys.argv[2]
m, t = record["metrics"], record["timings"]
print(f"{record['env']['device_name']}: clean {100 * m['clean_acc']:.1f} %, robust {100 * m['robust_acc']:.1f} %; "
      f"training {t['train_s']:.0f} s, attack {t['eval_s']:.0f} s, probes {t['checks_s']:.0f} s, "
      f"end to end {wall} s; flags raised: {record['flags'].get('raised', [])}")
PY
echo "gpu_check: figures in $out/"
