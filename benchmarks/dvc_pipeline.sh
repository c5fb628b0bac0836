#!/usr/bin/env bash
# The Dogs vs Cats input pipeline on this machine, end to end, against what training consumes:
#   1. prepare: `dptrain prepare --size 64 --force` on COUNT synthetic JPEGs (dpt-gen-jpegs, sides
#      50..500 px like the real photos) at --threads 1 and 2: images/s of decode + resize + zstd
#      compression + write (wall time of the whole command);
#   2. sizes: the shards against the raw JPEG bytes and against the uint8 pixels they hold;
#   3. loader: build/benchmarks/bench_loader on the 64 px and 32 px shards (opening them, i.e.
#      checking and decompressing every chunk, is timed too), random resized crop + flip +
#      normalization, batch 32, synchronous and with 1 and 2 prefetch workers: batches/s, img/s;
#   4. step: `dptrain bench train` img/s of models/dvc-resnet.cfg (64 px) and models/dvc-small.cfg
#      (32 px) at the same batch with 1 and 2 threads, and the ratio loader img/s / step img/s
#      (above 1: the loader keeps up; it runs beside the step, on its own worker threads).
# Every measurement is taken ROUNDS times, interleaved (round 1 of everything, then round 2, ...)
# so that machine noise hits all alike; the summary reports medians.
#
# Usage: benchmarks/dvc_pipeline.sh [rounds=3] [count=2000]      (after `make build`)
# Environment: BUILD (build directory, default build), WORK (scratch, default BUILD/bench/dvc;
#   the JPEGs are generated there once and reused).
# Output: BUILD/bench/dvc_pipeline.jsonl (every measurement as a JSON line with "round") and the
#   summary on stdout (benchmarks/summarize_dvc.py).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
COUNT=${2:-2000}
BUILD=${BUILD:-build}
DPT=$BUILD/dptrain
GEN=$BUILD/datasets/dpt-gen-jpegs
BL=$BUILD/benchmarks/bench_loader
WORK=${WORK:-$BUILD/bench/dvc}
LOG=$BUILD/bench/dvc_pipeline.jsonl
BATCH=32
for f in "$DPT" "$GEN" "$BL"; do
  [[ -x $f ]] || { echo "dvc_pipeline: $f is not built (make build, or set BUILD)" >&2; exit 1; }
done
mkdir -p "$WORK" "$(dirname "$LOG")"
: > "$LOG"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=1
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc --all) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# The JPEGs, once (deterministic from the seed).
if [[ ! -f $WORK/.jpegs-$COUNT.done ]]; then
  rm -rf "$WORK/jpegs" "$WORK"/.jpegs-*.done
  echo "# generating $COUNT JPEGs in $WORK/jpegs"
  "$GEN" --out "$WORK/jpegs" --count "$COUNT" --seed 1 > /dev/null
  touch "$WORK/.jpegs-$COUNT.done"
fi
jpeg_bytes=$(find "$WORK/jpegs" -name '*.jpg' -printf '%s\n' | awk '{ s += $1 } END { print s }')

# One JSON line per run of a command: {"round":R,"bench":"prepare",...}
emit() { echo "{\"round\":$1,$2}" >> "$LOG"; }

for r in $(seq "$ROUNDS"); do
  echo "# round $r of $ROUNDS"
  for t in 1 2; do
    t0=$(date +%s.%N)
    "$DPT" prepare --input "$WORK/jpegs" --output "$WORK/shards64" --size 64 --threads "$t" \
      --force > "$WORK/prep.out" 2> /dev/null
    t1=$(date +%s.%N)
    n=$(sed -n 's/^prepared \([0-9]*\) images.*/\1/p' "$WORK/prep.out")
    emit "$r" "\"bench\":\"prepare\",\"size\":64,\"threads\":$t,\"images\":$n,\"wall_s\":$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
  done
  if ((r == 1)); then
    "$DPT" prepare --input "$WORK/jpegs" --output "$WORK/shards32" --size 32 --threads 2 > /dev/null 2>&1
    for s in 64 32; do
      shard_bytes=$(cat "$WORK/shards$s"/shard-*.dps | wc -c)
      n=$(sed -n 's/^result .* prepared=\([0-9]*\) .*/\1/p' "$WORK/shards$s/manifest.txt")
      emit 0 "\"bench\":\"sizes\",\"size\":$s,\"images\":$n,\"jpeg_bytes\":$jpeg_bytes,\"shard_bytes\":$shard_bytes,\"pixel_bytes\":$((n * s * s * 3))"
    done
  fi
  for s in 64 32; do
    "$BL" --data "shards:$WORK/shards$s" --batch "$BATCH" --workers sync,1,2 --steps 60 --reps 3 \
      | sed "s/^{/{\"round\":$r,\"size\":$s,/" >> "$LOG"
  done
  for t in 1 2; do
    for m in dvc-resnet:64 dvc-small:32; do
      OMP_NUM_THREADS=$t "$DPT" bench train --model "models/${m%%:*}.cfg" --batch "$BATCH" \
        --threads "$t" --steps 15 --warmup-steps 3 | sed "s/^{/{\"round\":$r,\"size\":${m##*:},/" >> "$LOG"
    done
  done
done
python3 benchmarks/summarize_dvc.py "$LOG"
