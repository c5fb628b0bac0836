#!/usr/bin/env bash
# All-reduce on this machine: every algorithm and MPI_Allreduce side by side at np = 2 and 4,
# `rounds` runs each (interleaved: np 2, np 4, np 2, ...), then the medians per (np, algo, size),
# the ratio of our best to MPI_Allreduce and the memcpy-bound limit (benchmarks/summarize_allreduce.py)
# and PNG plots of busbw against size (benchmarks/plot_allreduce).
#
# Usage: benchmarks/allreduce.sh [rounds=3] [max_bytes=256M]     (after `make build`)
# Output: build/bench/allreduce.jsonl (every run's JSON lines, with a "run" field added),
#         build/bench/allreduce-np{2,4}.png, and the summary on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
MAX=${2:-256M}
OUT=build/bench
mkdir -p "$OUT"
LOG=$OUT/allreduce.jsonl
: > "$LOG"
[[ -x build/dptrain ]] || { echo "run 'make build' first" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) cpus; $(mpirun --version | head -1)"
for r in $(seq "$ROUNDS"); do
  for np in 2 4; do
    extra=()
    ((np > $(nproc --all))) && extra=(--oversubscribe)
    # shm0copy / auto0copy: shm and auto on a buffer inside the shm window (dpt_coll_buffer: no
    # copy in), in the same run; every size's blocks are interleaved across all the variants
    mpirun "${extra[@]}" -np "$np" build/dptrain bench allreduce --json --min-bytes 4 \
      --max-bytes "$MAX" --factor 4 --algos ring,tree,rd,rhd,shm,auto,mpi,shm0copy,auto0copy \
      | sed "s/^{/{\"run\":$r,/" >> "$LOG"
  done
done
python3 benchmarks/summarize_allreduce.py "$LOG"
if command -v gnuplot > /dev/null; then
  bash benchmarks/plot_allreduce "$LOG" "$OUT"
fi
