#!/usr/bin/env bash
# Training throughput on one GPU, dptrain (--device cuda) vs PyTorch eager, same network
# (fmnist-cnn, resnet9), same batch, same precision (fp32; bf16 and fp16 with torch.autocast, fp16
# with dynamic loss scaling on both sides). Rounds are interleaved (each round runs every dptrain
# configuration, then one PyTorch process over every configuration in NCHW and channels-last) so
# drifts of clock and temperature hit every contender alike. Summary: per model and precision,
# the median over rounds of each contender's median img/s and the ratio dptrain / best PyTorch.
#
# Usage: benchmarks/gpu_vs_torch.sh [rounds=3] [steps=30] [build dir=build]
#   env: PYTHON (default python3: the one with a CUDA PyTorch), FMNIST_BATCH (256),
#        RESNET9_BATCH (512), PRECISIONS ("fp32 bf16 fp16")
# Output: JSON lines in $BUILD/bench/gpu_vs_torch.jsonl (dptrain's bench lines and PyTorch's,
# each tagged with "round"), the summary on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
STEPS=${2:-30}
BUILD=${3:-build}
PY=${PYTHON:-python3}
FB=${FMNIST_BATCH:-256}
RB=${RESNET9_BATCH:-512}
PRECISIONS=${PRECISIONS:-fp32 bf16 fp16}
DPT=$BUILD/dptrain
OUT=$BUILD/bench
mkdir -p "$OUT"
LOG=$OUT/gpu_vs_torch.jsonl
: > "$LOG"
[[ -x $DPT ]] || { echo "gpu_vs_torch: no $DPT (build first)" >&2; exit 1; }
if ! "$DPT" info | grep -q 'backend "cuda" compiled, [1-9]'; then
  echo "gpu_vs_torch: no CUDA device for dptrain: $("$DPT" info | grep CUDA)" >&2
  exit 77
fi
if ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
  echo "gpu_vs_torch: $PY has no CUDA PyTorch" >&2
  exit 1
fi
echo "# $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1);" \
     "torch $("$PY" -c 'import torch; print(torch.__version__)')"
cfgs=()
for p in $PRECISIONS; do
  for f in nchw channels_last; do
    cfgs+=(--config "fmnist-cnn:$p:$f:$FB" --config "resnet9:$p:$f:$RB")
  done
done
for r in $(seq "$ROUNDS"); do
  for p in $PRECISIONS; do
    for m in fmnist-cnn:$FB resnet9:$RB; do
      "$DPT" bench train --device cuda --precision "$p" --model "models/${m%%:*}.cfg" \
        --batch "${m##*:}" --steps "$STEPS" --warmup-steps 10 \
        | sed "s/^{/{\"round\":$r,\"device\":\"cuda\",/" >> "$LOG"
    done
  done
  "$PY" benchmarks/torch_gpu_train.py "${cfgs[@]}" --steps "$STEPS" --warmup-steps 10 \
    | sed "s/^{/{\"round\":$r,/" >> "$LOG"
done
"$PY" - "$LOG" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def key(r):
    m = r["model"].split("/")[-1].replace(".cfg", "")
    impl = "dptrain" if r["impl"] == "dptrain" else "pytorch " + r.get("layout", "")
    return (m, r["precision"], impl)
runs = {}
for r in rows:
    runs.setdefault(key(r), []).append(r["img_s"])
print(f"{'model':<11} {'prec':<5} {'contender':<24} {'img/s (median of rounds)':>25}")
for (m, p) in sorted({(k[0], k[1]) for k in runs}):
    med = {k[2]: statistics.median(v) for k, v in runs.items() if k[:2] == (m, p)}
    for c, v in sorted(med.items()):
        print(f"{m:<11} {p:<5} {c:<24} {v:>25.1f}")
    torch_best = max((v for c, v in med.items() if c.startswith("pytorch")), default=0)
    if "dptrain" in med and torch_best:
        print(f"{m:<11} {p:<5} {'ratio dptrain / best torch':<24} {med['dptrain'] / torch_best:>25.2f}x")
PYEOF
