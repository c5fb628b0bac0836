#!/usr/bin/env bash
# Data-parallel training throughput on fmnist-cnn (issue 4): dptrain 1 rank x 2 threads, dptrain
# 2 ranks x 1 thread, PyTorch DDP (gloo) 2 processes x 1 thread, and PyTorch 1 process x 2 threads
# for reference; global batch 128 everywhere (per rank 128 or 64), real Fashion-MNIST data.
# Rounds are interleaved (each contender once per round, the starting contender rotating) so the
# machine's drift hits all alike. Every run does STEPS steps: the first window of WINDOW steps is
# warm-up, the rest is timed in windows of WINDOW steps, img/s = median over windows (dptrain: of
# the "step" metrics records' img_s; PyTorch: benchmarks/torch_ddp_fmnist.py's windows). dptrain
# 2x1 also yields the fraction of communication hidden behind backward (see summarize_ddp.py for
# which fields it uses). Summary: medians over rounds, ratio dptrain 2x1 / PyTorch DDP 2x1.
#
# Usage: benchmarks/ddp_vs_torch.sh [rounds=5] [steps=60]      (after `make build`)
# Env:   DPT=build/dptrain  WINDOW=10  PYTHON=/usr/bin/python3  RESULTS=build/bench/ddp.jsonl
#        DPT_EXTRA="..." (more `dptrain train` flags)  RUN_TIMEOUT=600 (seconds per run)
#        CONTENDERS="dptrain-1x2 dptrain-2x1 torch-ddp-2x1 torch-1x2" (a subset to run)
# Output: raw JSON lines in $RESULTS (truncated first), the summary table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
STEPS=${2:-60}
WINDOW=${WINDOW:-10}
PY=${PYTHON:-/usr/bin/python3}
DPT=${DPT:-build/dptrain}
RESULTS=${RESULTS:-build/bench/ddp.jsonl}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
CONTENDERS=${CONTENDERS:-"dptrain-1x2 dptrain-2x1 torch-ddp-2x1 torch-1x2"}
# Same work on both sides: no augmentation (the PyTorch twin has none), no eval, no progress bar.
# --no-progress rather than --quiet: the trainer's "communication: ... hidden" line is wanted.
DPT_EXTRA=${DPT_EXTRA:-"--no-flip"}
SUM="$PY benchmarks/summarize_ddp.py"
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}

(( STEPS >= 2 * WINDOW )) || { echo "ddp_vs_torch: steps ($STEPS) must be >= 2 x WINDOW ($WINDOW)" >&2; exit 1; }
[[ -x $DPT ]] || { echo "ddp_vs_torch: no $DPT; run 'make build' first (or set DPT=)" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "ddp_vs_torch: no mpirun (apt-get install openmpi-bin)" >&2; exit 1; }
if ! "$PY" -c 'import torch.distributed as d; assert d.is_available() and d.is_gloo_available()' 2>/dev/null; then
  echo "ddp_vs_torch: $PY has no torch with gloo (scripts/install-deps.sh --bench)" >&2
  exit 1
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$(dirname "$RESULTS")"
: > "$RESULTS"
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cpus;" \
     "torch $("$PY" -c 'import torch; print(torch.__version__)'); dptrain $DPT"
echo "# $ROUNDS rounds x $STEPS steps (first $WINDOW warm-up, windows of $WINDOW); raw lines: $RESULTS"

load1() { cut -d' ' -f1 /proc/loadavg; }
read -r -a dpt_extra <<< "$DPT_EXTRA"

# error_line IMPL CONTENDER ROUND RC LOG: a JSON record of a failed run (last lines of its output)
error_line() {
  "$PY" -c 'import json, sys
impl, c, r, rc, log = sys.argv[1:]
try:
    tail = " | ".join(open(log, errors="replace").read().strip().splitlines()[-3:])[:300]
except OSError:
    tail = ""
print(json.dumps({"bench": "ddp", "impl": impl, "contender": c, "round": int(r),
                  "error": f"exit {rc}: {tail}"}))' "$@" >> "$RESULTS"
}

# dptrain CONTENDER ROUND RANKS THREADS BATCH
run_dptrain() {
  local c=$1 r=$2 np=$3 t=$4 b=$5 m=$TMP/metrics-$1-$2.jsonl log=$TMP/stdout-$1-$2.log ld
  ld=$(load1)
  rm -f "$m"
  local train=("$DPT" train --threads "$t" --batch "$b" --max-steps "$STEPS" --no-eval
               --log-every "$WINDOW" --no-progress --metrics "$m" "${dpt_extra[@]}")
  local rc=0
  if (( np == 1 )); then
    OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=1 timeout "$RUN_TIMEOUT" "${train[@]}" > "$log" 2>&1 || rc=$?
  else
    timeout "$RUN_TIMEOUT" mpirun --oversubscribe -np "$np" --bind-to none \
      -x OMP_NUM_THREADS="$t" -x OPENBLAS_NUM_THREADS=1 "${train[@]}" > "$log" 2>&1 || rc=$?
  fi
  if (( rc != 0 )); then
    error_line dptrain "$c" "$r" "$rc" "$log"
    return
  fi
  $SUM record --contender "$c" --round "$r" --ranks "$np" --threads "$t" --batch "$b" \
    --metrics "$m" --stdout "$log" --window "$WINDOW" --load "$ld" >> "$RESULTS"
}

# torch CONTENDER ROUND torch_ddp_fmnist.py-args...
run_torch() {
  local c=$1 r=$2 log=$TMP/stdout-$1-$2.log ld rc=0
  shift 2
  ld=$(load1)
  timeout "$RUN_TIMEOUT" "$PY" benchmarks/torch_ddp_fmnist.py "$@" --warmup-steps "$WINDOW" \
    --steps $((STEPS - WINDOW)) --window "$WINDOW" > "$log" 2>&1 || rc=$?
  if (( rc != 0 )) || ! grep -q '^{' "$log"; then
    error_line pytorch "$c" "$r" "$rc" "$log"
    return
  fi
  grep '^{' "$log" | $SUM tag contender="$c" round="$r" load1="$ld" >> "$RESULTS"
}

run_one() {   # CONTENDER ROUND
  case $1 in
    dptrain-1x2)   run_dptrain "$1" "$2" 1 2 128 ;;
    dptrain-2x1)   run_dptrain "$1" "$2" 2 1 64 ;;
    torch-ddp-2x1) run_torch "$1" "$2" --mode ddp-gloo --ranks 2 --threads 1 --batch 64 ;;
    torch-1x2)     run_torch "$1" "$2" --mode single --threads 2 --batch 128 ;;
    *) echo "ddp_vs_torch: unknown contender $1" >&2; exit 1 ;;
  esac
}

read -r -a list <<< "$CONTENDERS"
n=${#list[@]}
for r in $(seq "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do
    c=${list[$(( (i + r - 1) % n ))]}
    echo "# round $r/$ROUNDS: $c (load $(load1))" >&2
    run_one "$c" "$r"
  done
done
$SUM summary "$RESULTS"
