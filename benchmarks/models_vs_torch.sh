#!/usr/bin/env bash
# Training throughput of the model zoo, dptrain vs PyTorch, side by side: the same network
# (benchmarks/torch_models.py's twins of models/*.cfg, same layers and parameter counts), the same
# step (fixed random batch; cross-entropy with label smoothing 0.1; SGD, Nesterov momentum 0.9,
# weight decay 5e-4 on conv/linear weights, as `dptrain bench train` always uses), the same batch
# and thread count. For each model and each thread count (1, 2), R rounds, interleaved so that
# machine noise hits every contender alike; each round runs each contender once:
#   dptrain bench train --layout blocked (Winograd on, the default), --layout nchw;
#   for each python with torch: eager NCHW, eager channels-last, and torch.compile (mode default)
#   in the format that was faster in eager in the same round (COMPILE_FORMAT to fix it); torch
#   without torch.compile (Debian's 1.13) skips that one, and says so.
# Pythons: Debian's /usr/bin/python3 with python3-torch 1.13 (scripts/install-deps.sh --bench) and
# benchmarks/.venv with PyPI's current torch (made here when missing: python3 -m venv, then pip
# install torch torchvision, about 3 GB of wheels with the CUDA libraries PyPI's torch pulls;
# they are not loaded on CPU; NO_VENV=1 skips it). A python without torch is skipped.
# Summary (benchmarks/summarize_models.py): per model and thread count the median over rounds of
# each contender's img/s (each run's median step) and the ratio dptrain best / torch best.
#
# Usage: benchmarks/models_vs_torch.sh [model ...]   (default: resnet50 vit-lite vit-tiny
#        efficientnet-b0; after `make build`)
# Env:   ROUNDS (3), STEPS (timed steps per run, 10), WARMUP (untimed steps first, 3; torch.compile
#        runs get at least 3), THREADS ("1 2"), BATCH (one batch for every model; default per model:
#        resnet50 32, efficientnet-b0 64, vit-lite 64, vit-tiny 128),
#        PYTHONS (default "/usr/bin/python3 benchmarks/.venv/bin/python"),
#        COMPILE_FORMAT (auto | nchw | channels_last | none; default auto), DPT (build/dptrain),
#        LOG (default benchmarks/results/models_vs_torch/<date>.jsonl; an existing file is not
#        overwritten: <date>-<time>.jsonl then).
# Output: JSON lines in $LOG (each tagged "round"; a "meta" line first), the summary on stdout.
# Time: resnet50 is the long one: about 250 GFLOP a step at batch 32, several seconds a step on
# one core, so a default run takes on the order of an hour for the four models on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-3}
THREADS=${THREADS:-1 2}
COMPILE_FORMAT=${COMPILE_FORMAT:-auto}
DPT=${DPT:-build/dptrain}
VENV=benchmarks/.venv
PYTHONS=${PYTHONS:-/usr/bin/python3 $VENV/bin/python}
MODELS=("$@")
[[ ${#MODELS[@]} -gt 0 ]] || MODELS=(resnet50 vit-lite vit-tiny efficientnet-b0)
declare -A DEFAULT_BATCH=([resnet50]=32 [efficientnet-b0]=64 [vit-lite]=64 [vit-tiny]=128
                          [resnet50-fmnist]=32 [efficientnet-b0-fmnist]=64)
case $COMPILE_FORMAT in auto | nchw | channels_last | none) ;;
  *) echo "models_vs_torch: COMPILE_FORMAT=$COMPILE_FORMAT (auto|nchw|channels_last|none)" >&2
     exit 2 ;;
esac
[[ -x $DPT ]] || { echo "models_vs_torch: no $DPT (run 'make build' first)" >&2; exit 1; }

if [[ " $PYTHONS " == *" $VENV/bin/python "* && ! -x $VENV/bin/python && -z ${NO_VENV:-} ]]; then
  echo "models_vs_torch: making $VENV with PyPI's torch (about 3 GB to download; NO_VENV=1 skips)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch torchvision
fi
pys=()
for py in $PYTHONS; do
  [[ -n ${NO_VENV:-} && $py == "$VENV/bin/python" ]] && continue
  if [[ -x $py ]] && "$py" -c 'import torch, torchvision' 2>/dev/null; then
    pys+=("$py")
  else
    echo "models_vs_torch: $py has no torch/torchvision, skipped (Debian's: apt-get install" \
         "python3-torch python3-torchvision, or scripts/install-deps.sh --bench)" >&2
  fi
done
[[ ${#pys[@]} -gt 0 ]] || { echo "models_vs_torch: no python with torch" >&2; exit 1; }

if [[ -z ${LOG:-} ]]; then
  mkdir -p benchmarks/results/models_vs_torch
  LOG=benchmarks/results/models_vs_torch/$(date +%F).jsonl
  [[ -e $LOG ]] && LOG=benchmarks/results/models_vs_torch/$(date +%F-%H%M%S).jsonl
fi
mkdir -p "$(dirname "$LOG")"
: > "$LOG"

# The twins first: a parameter count that differs from dptrain's model stops the run before any
# timing (torch_models.py checks it; the check lines go to the log), as would a step that does
# not run, or a model dptrain cannot read.
declare -A TORCHV HAS_COMPILE
pv=()   # python, its torch version, ...
for py in "${pys[@]}"; do
  TORCHV[$py]=$("$py" -c 'import torch; print(torch.__version__)')
  pv+=("$py" "${TORCHV[$py]}")
  HAS_COMPILE[$py]=$("$py" -c 'import torch; print(int(hasattr(torch, "compile")))')
  if [[ ${HAS_COMPILE[$py]} == 0 && $COMPILE_FORMAT != none ]]; then
    echo "# $py: torch ${TORCHV[$py]} has no torch.compile: its compile contender is skipped"
  fi
done
python3 -c 'import json, sys
a = sys.argv[1:]
print(json.dumps({"bench": "meta", "cpu": a[0], "nproc": int(a[1]), "dptrain": a[2],
                  "rounds": int(a[3]), "steps": int(a[4]), "warmup_steps": int(a[5]),
                  "torch": dict(zip(a[6::2], a[7::2]))}))' \
  "$(lscpu | sed -n 's/^Model name: *//p')" "$(nproc)" "$("$DPT" version)" "$ROUNDS" "$STEPS" \
  "$WARMUP" "${pv[@]}" >> "$LOG"
for m in "${MODELS[@]}"; do   # and dptrain reads each model (one step at batch 1)
  "$DPT" bench train --model "$m" --threads 1 --batch 1 --steps 1 --warmup-steps 0 > /dev/null \
    || { echo "models_vs_torch: $DPT cannot run $m" >&2; exit 1; }
done
for py in "${pys[@]}"; do
  for m in "${MODELS[@]}"; do
    OMP_NUM_THREADS=1 "$py" benchmarks/torch_models.py --model "$m" --batch 2 --check 2>/dev/null \
      | sed "s|^{|{\"python\":\"$py\",|" >> "$LOG" \
      || { echo "models_vs_torch: the $m twin fails under $py:" >&2
           OMP_NUM_THREADS=1 "$py" benchmarks/torch_models.py --model "$m" --batch 2 --check >&2
           exit 1; }
  done
done
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cpus; $("$DPT" version);" \
     "$(for py in "${pys[@]}"; do printf '%s: torch %s; ' "$py" "${TORCHV[$py]}"; done)"
echo "# log: $LOG"

tag() { sed "s|^{|{\"round\":$1,|"; }
# one torch run; a failure is reported and the round goes on (the summary then lacks that run)
torch_run() {   # round python threads args...
  local r=$1 py=$2 t=$3
  shift 3
  local line
  if line=$(OMP_NUM_THREADS=$t "$py" benchmarks/torch_models.py --threads "$t" "$@"); then
    echo "$line" | sed "s|^{|{\"python\":\"$py\",|" | tag "$r" >> "$LOG"
    echo "$line"
  else
    echo "models_vs_torch: failed: $py benchmarks/torch_models.py --threads $t $*" >&2
  fi
}
img_s() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])["img_s"] if sys.argv[1] else 0)' "$1"; }

for m in "${MODELS[@]}"; do
  B=${BATCH:-${DEFAULT_BATCH[$m]:-64}}
  for t in $THREADS; do
    for r in $(seq "$ROUNDS"); do
      echo "# $m threads $t round $r/$ROUNDS (batch $B)"
      for layout in blocked nchw; do
        OMP_NUM_THREADS=$t "$DPT" bench train --model "$m" --threads "$t" --layout "$layout" \
          --batch "$B" --steps "$STEPS" --warmup-steps "$WARMUP" | tag "$r" >> "$LOG"
      done
      for py in "${pys[@]}"; do
        common=(--model "$m" --batch "$B" --steps "$STEPS" --warmup-steps "$WARMUP")
        a=$(torch_run "$r" "$py" "$t" "${common[@]}" --format nchw || true)
        b=$(torch_run "$r" "$py" "$t" "${common[@]}" --format channels_last || true)
        [[ $COMPILE_FORMAT == none || ${HAS_COMPILE[$py]} == 0 ]] && continue
        fmt=$COMPILE_FORMAT
        if [[ $fmt == auto ]]; then
          fmt=$(python3 -c 'import sys; print("channels_last" if float(sys.argv[2]) > float(sys.argv[1]) else "nchw")' \
                "$(img_s "$a")" "$(img_s "$b")")
        fi
        torch_run "$r" "$py" "$t" "${common[@]}" --format "$fmt" --compile > /dev/null || true
      done
    done
  done
done
python3 benchmarks/summarize_models.py "$LOG"
