#!/usr/bin/env bash
# Test accuracy of fmnist-cnn (the default job) with each gradient codec against uncompressed
# training, same seed, same schedule: issue 16's accuracy table (docs/PERFORMANCE.md).
# Accuracy does not depend on speed, so these runs may share the machine; their wall times are
# not comparisons (benchmarks/netns_compress.sh measures time).
#
# Usage: benchmarks/compress_accuracy.sh NP EPOCHS CODEC...   e.g. 2 8 none fp16 powersgd:4
#        a CODEC may carry its start: powersgd:4@234 runs --compress powersgd:4 --compress-start 234
# Env:   DPT=PATH   the binary (default: a copy of build/dptrain taken at start, so that a rebuild
#                   during the campaign does not change it)
# Output: benchmarks/results/compress-acc/np<NP>-<codec>.jsonl (metrics) and .txt (stdout);
#         then benchmarks/summarize_compress_acc.py prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."
NP=${1:?NP}; EPOCHS=${2:?EPOCHS}; shift 2
OUT=benchmarks/results/compress-acc
mkdir -p "$OUT"
if [[ -z ${DPT:-} ]]; then
  DPT=$(mktemp -d)/dptrain
  cp build/dptrain "$DPT"
fi
MPI=(mpirun --oversubscribe --bind-to none -np "$NP")
[[ $(id -u) -eq 0 ]] && MPI=(mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$NP")
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cpus; $("$DPT" --version)"
for spec in "$@"; do
  codec=${spec%@*}; start=0
  [[ $spec == *@* ]] && start=${spec#*@}
  tag=$(echo "np$NP-$codec-s$start" | tr ':+' '__')
  "${MPI[@]}" "$DPT" train --epochs "$EPOCHS" --compress "$codec" --compress-start "$start" \
    --no-progress --metrics "$OUT/$tag.jsonl" > "$OUT/$tag.txt" 2>&1 || echo "$tag: failed (see $OUT/$tag.txt)" >&2
  grep -h "final test accuracy" "$OUT/$tag.txt" | sed "s/^/$tag: /" || true
done
