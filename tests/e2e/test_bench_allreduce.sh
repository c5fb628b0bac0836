#!/usr/bin/env bash
# `dptrain bench allreduce` under mpirun: every algorithm verified (wrong = 0) at np 3 (not a
# power of two) on sizes from 0 elements up, JSON lines carry the DESIGN.md fields, the memcpy
# line is there, deterministic and bf16 runs verify too, and bad flags give one error, exit 2.
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
run() { mpirun --oversubscribe -np "$@" 2> "$TMP/err"; }
run 3 "$DPT" bench allreduce --json --min-bytes 2 --max-bytes 256K --factor 8 --reps 2 > "$TMP/a.jsonl" \
  && ok || bad "bench allreduce np 3 exited $?: $(cat "$TMP/err")"
for algo in ring tree rd rhd shm auto mpi; do
  n=$(grep -c "\"algo\":\"$algo\"" "$TMP/a.jsonl")
  [[ $n -eq 6 ]] && ok || bad "$algo: $n rows, want 6 (2 B = 0 floats, 16 B .. 64 KiB by 8)"
done
line=$(grep '"algo":"ring"' "$TMP/a.jsonl" | tail -1)
for f in algo np bytes time_us algbw_GBs busbw_GBs predicted_us wrong; do
  [[ "$line" == *"\"$f\":"* ]] && ok || bad "row lacks $f: $line"
done
[[ "$line" == *'"np":3'* ]] && ok || bad "np is not 3: $line"
grep -q '"algo":"memcpy".*"copy_GBs"' "$TMP/a.jsonl" && ok || bad "no memcpy line"
bad_rows=$(grep -v '"wrong":0' "$TMP/a.jsonl" | grep -c '"wrong"' || true)
[[ $bad_rows -eq 0 ]] && ok || bad "$bad_rows rows with wrong elements"
run 4 "$DPT" bench allreduce --json --deterministic --dtype bf16 --op avg --max-bytes 64K --factor 16 \
  --reps 1 > "$TMP/d.jsonl" && ok || bad "deterministic bf16 avg run exited $?: $(cat "$TMP/err")"
[[ $(grep -c '"wrong":0' "$TMP/d.jsonl") -eq $(grep -c '"wrong"' "$TMP/d.jsonl") ]] && ok || bad "deterministic run has wrong rows"
# window variants in the same run: shm and auto on the shm window buffer, verified too
run 2 "$DPT" bench allreduce --json --max-bytes 1M --factor 64 --reps 2 --algos shm,mpi,shm0copy,auto0copy \
  > "$TMP/w.jsonl" && ok || bad "0copy run exited $?: $(cat "$TMP/err")"
for algo in shm0copy auto0copy; do
  n=$(grep '"wrong":0' "$TMP/w.jsonl" | grep -c "\"algo\":\"$algo\"" || true)
  [[ $n -eq 4 ]] && ok || bad "$algo: $n verified rows, want 4: $(cat "$TMP/w.jsonl")"
done
grep -q '"algo":"auto0copy".*"choice":"shm"' "$TMP/w.jsonl" && ok || bad "auto on the window never chose shm"
# table output for people
run 2 "$DPT" bench allreduce --max-bytes 4K --factor 32 --reps 1 --algos ring,mpi > "$TMP/t.txt" \
  && grep -q "busbw" "$TMP/t.txt" && ok || bad "table output: $(cat "$TMP/t.txt" "$TMP/err")"
# bad flags: usage errors (exit 2) before MPI starts, or on every rank alike
# (under mpirun: exit non-zero, our message once, from rank 0; mpirun adds its own lines)
rc=0
mpirun -np 2 "$DPT" bench allreduce --algos ring,bogus > /dev/null 2> "$TMP/err" || rc=$?
n=$(grep -c "dptrain bench allreduce: error: --algos: unknown all-reduce algorithm 'bogus'; known: ring" "$TMP/err" || true)
[[ $rc -ne 0 && $n -eq 1 ]] && ok || bad "bad --algos under mpirun: exit $rc, message $n times: $(cat "$TMP/err")"
expect_fail 2 "--max-bytes: '12Q' is not a size" -- "$DPT" bench allreduce --max-bytes 12Q
expect_fail 2 "--dtype: 'f8' is not f32, bf16 or f16" -- "$DPT" bench allreduce --dtype f8
finish
