#!/usr/bin/env bash
# Training throughput, dptrain vs PyTorch, same fmnist-cnn step, batch 128, same thread count.
# Rounds are interleaved (dptrain blocked with Winograd convolutions (the default), blocked with
# direct convolutions, plain NCHW; torch NCHW and channels-last; each once per round) so machine noise hits every contender alike; the summary is the median over
# rounds of each one's median step time, and the ratio dptrain-best / torch-best per thread count.
# Also measures the sgemm peak (OpenBLAS and oneDNN; the best is the GFLOP/s denominator) at
# each thread count.
#
# Usage: benchmarks/train_vs_torch.sh [rounds=5] [steps=40]   (after `make build`)
# Env:   DPT_BEFORE=PATH   another dptrain binary (e.g. a build of the commit before a change),
#                          run in the same rounds right after build/dptrain, its lines tagged
#                          "build":"before": the summary then gives both and their ratio.
# Output: JSON lines in build/bench/train_vs_torch.jsonl and a summary table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
STEPS=${2:-40}
PY=${PYTHON:-/usr/bin/python3}
DPT=build/dptrain
OUT=build/bench
mkdir -p "$OUT"
LOG=$OUT/train_vs_torch.jsonl
: > "$LOG"
[[ -x $DPT && -x build/benchmarks/bench_sgemm ]] || { echo "run 'make build' first" >&2; exit 1; }
[[ -z ${DPT_BEFORE:-} || -x $DPT_BEFORE ]] || { echo "DPT_BEFORE=$DPT_BEFORE is not executable" >&2; exit 1; }
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "train_vs_torch: $PY has no torch (apt-get install python3-torch)" >&2
  exit 1
fi
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cpus; torch $("$PY" -c 'import torch; print(torch.__version__)')"
for t in 1 2; do
  for r in $(seq "$ROUNDS"); do
    for variant in "--layout blocked" "--layout blocked --no-winograd" "--layout nchw"; do
      # shellcheck disable=SC2086
      "$DPT" bench train --threads "$t" $variant --batch 128 --steps "$STEPS" \
        --warmup-steps 5 >> "$LOG"
      if [[ -n ${DPT_BEFORE:-} ]]; then
        # shellcheck disable=SC2086
        "$DPT_BEFORE" bench train --threads "$t" $variant --batch 128 --steps "$STEPS" \
          --warmup-steps 5 | sed 's/^{/{"build":"before",/' >> "$LOG"
      fi
    done
    for fmt in nchw channels_last; do
      OMP_NUM_THREADS=$t "$PY" benchmarks/torch_fmnist.py --threads "$t" --format "$fmt" \
        --batch 128 --steps "$STEPS" --warmup-steps 5 >> "$LOG"
    done
    OPENBLAS_NUM_THREADS=$t build/benchmarks/bench_sgemm "$t" 2048 5 >> "$LOG"
  done
done
python3 benchmarks/summarize_train.py "$LOG"
