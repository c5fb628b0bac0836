#!/usr/bin/env bash
# Checkpoints and resume (issue 6):
#  - bit-exact resume: a run resumed from its step-4 checkpoint ends with the same bits as the
#    straight run (np 2: every rank's BN statistics are in the checkpoint);
#  - SIGUSR1 to the ranks: finish the step, checkpoint, exit 75; --resume auto finishes the run
#    with the straight run's bits; two signals at once: immediate exit 128 + 10;
#  - truncated, bit-flipped and foreign files are refused with an error naming the file;
#    --resume auto skips a corrupt newest checkpoint with a warning and uses the one before;
#  - kill -9 while checkpoints are being written never leaves a newest ckpt-*.dpt that fails.
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
CMP=$(dirname "$DPT")/tests/cmp_weights
MPI=(mpirun --oversubscribe --bind-to none -np 2)
args=(--model "$SRC/models/fmnist-cnn.cfg" --data synthetic:1024:1:28:28:10 --epochs 2 --threads 1
      --lr 0.05 --batch 32 --allreduce ring --no-progress --no-eval)

timeout 300 "${MPI[@]}" "$DPT" train "${args[@]}" --checkpoint-dir "$TMP/a" --checkpoint-every 4 \
  --keep-checkpoints 100 --save "$TMP/straight.dpt" > "$TMP/a.txt" 2>&1 || bad "straight run: $(tail -3 "$TMP/a.txt")"
[[ -f $TMP/a/ckpt-4.dpt && -f $TMP/a/ckpt-32.dpt && $(cat "$TMP/a/latest") == ckpt-32.dpt ]] && ok \
  || bad "checkpoints: $(ls "$TMP/a")"
timeout 300 "${MPI[@]}" "$DPT" train "${args[@]}" --resume "$TMP/a/ckpt-4.dpt" --save "$TMP/res.dpt" \
  > "$TMP/b.txt" 2>&1 || bad "resume run: $(tail -3 "$TMP/b.txt")"
grep -q "resumed from .*ckpt-4.dpt: step 4" "$TMP/b.txt" && ok || bad "no resume line: $(head -3 "$TMP/b.txt")"
r=$("$CMP" "$TMP/straight.dpt" "$TMP/res.dpt" --exact) && ok || bad "resume from step 4 is not bit-exact: $r"

# SIGUSR1 to both ranks mid-run -> checkpoint + exit 75 -> resume auto -> the straight run's bits
timeout 300 "${MPI[@]}" "$DPT" train "${args[@]}" --checkpoint-dir "$TMP/s" --checkpoint-every 1000 \
  --save "$TMP/sig.dpt" > "$TMP/s.txt" 2>&1 &
job=$!
wait_for "gradient bucket" "$TMP/s.txt"   # training runs (the bucket report comes after setup)
sleep 1
# the stop signals are blocked in every thread of every rank but the one in sigwait (a handler
# interrupting oneDNN's kernels corrupted the heap): SIGINT, SIGUSR1, SIGTERM = 0x4202
masks=$(for p in $(pgrep -f -- "^$DPT train .*--checkpoint-dir $TMP/s "); do
          for t in /proc/"$p"/task/*; do
            [[ $(cat "$t/wchan" 2> /dev/null) == *sigtimedwait* ]] && continue
            awk '/^SigBlk/ {print $2}' "$t/status"
          done
        done)
unblocked=$(for m in $masks; do (( (16#$m & 16#4202) == 16#4202 )) || echo "$m"; done)
[[ -n $masks && -z $unblocked ]] && ok || bad "stop signals not blocked in every thread: ${masks:-no ranks}"
# the ranks only (as srun delivers it); mpirun would forward a signal of its own as well
pkill -USR1 -f -- "^$DPT train .*--checkpoint-dir $TMP/s " || bad "no rank to signal"
rc=0
wait $job || rc=$?
[[ $rc -eq 75 ]] && ok || bad "SIGUSR1: exit $rc, want 75: $(tail -3 "$TMP/s.txt")"
grep -q "^stopped after step .*checkpoint written" "$TMP/s.txt" && ok || bad "no stop line: $(tail -3 "$TMP/s.txt")"
timeout 300 "${MPI[@]}" "$DPT" train "${args[@]}" --checkpoint-dir "$TMP/s" --resume auto \
  --save "$TMP/sig.dpt" > "$TMP/s2.txt" 2>&1 || bad "resume auto after the signal: $(tail -3 "$TMP/s2.txt")"
grep -q "resumed from" "$TMP/s2.txt" && ok || bad "resume auto did not resume: $(head -3 "$TMP/s2.txt")"
r=$("$CMP" "$TMP/straight.dpt" "$TMP/sig.dpt" --exact) && ok || bad "signal + resume is not bit-exact: $r"

# without OPENBLAS_NUM_THREADS=1 OpenBLAS starts a worker before main, with no signal blocked:
# a signal the kernel hands to it must still stop the run cleanly (exit 75), not kill it (138)
env -u OPENBLAS_NUM_THREADS timeout 300 "${MPI[@]}" "$DPT" train "${args[@]}" \
  --checkpoint-dir "$TMP/o" --epochs 50 > "$TMP/o.txt" 2>&1 &
job=$!
wait_for "gradient bucket" "$TMP/o.txt"
pkill -USR1 -f -- "^$DPT train .*--checkpoint-dir $TMP/o " || bad "no rank to signal"
rc=0
wait $job || rc=$?
[[ $rc -eq 75 ]] && ok || bad "SIGUSR1 with OpenBLAS's own threads: exit $rc, want 75: $(tail -3 "$TMP/o.txt")"

# two signals: the second exits at once (128 + its number). Sent while the process is stopped,
# so that both are pending when it continues and it cannot finish its step in between; two
# different signals, as two pending of the same number are one.
"$DPT" train "${args[@]}" --epochs 50 > "$TMP/two.txt" 2>&1 &
pid=$!
wait_for "total parameters" "$TMP/two.txt" || bad "two signals: the run did not start"
kill -STOP $pid; kill -USR1 $pid; kill -TERM $pid; kill -CONT $pid
rc=0; wait $pid || rc=$?
[[ $rc -eq 143 || $rc -eq 138 ]] && grep -q ": stopping after the running step" "$TMP/two.txt" && ok \
  || bad "SIGUSR1 + SIGTERM: exit $rc, want 143 (or 138) after a stop line: $(tail -2 "$TMP/two.txt")"

# damaged files are refused, naming the file
cp "$TMP/a/ckpt-8.dpt" "$TMP/flip.dpt"
printf '\xff' | dd of="$TMP/flip.dpt" bs=1 seek=5000 conv=notrunc 2> /dev/null
head -c 3000 "$TMP/a/ckpt-8.dpt" > "$TMP/trunc.dpt"
refused() {   # refused WANT -- command: exits non-zero, says WANT (mpirun adds lines of its own)
  local want=$1 rc=0 err; shift 2
  err=$(timeout 120 "$@" 2>&1 > /dev/null) || rc=$?
  [[ $rc -ne 0 && $rc -ne 124 && $err == *"$want"* ]] && ok || bad "$* -> exit $rc, want '$want' in: $err"
}
refused "$TMP/flip.dpt: payload checksum mismatch" -- "${MPI[@]}" "$DPT" train "${args[@]}" --resume "$TMP/flip.dpt"
refused "$TMP/trunc.dpt: truncated" -- "${MPI[@]}" "$DPT" train "${args[@]}" --resume "$TMP/trunc.dpt"
refused "$TMP/straight.dpt: bad magic" -- "${MPI[@]}" "$DPT" train "${args[@]}" --resume "$TMP/straight.dpt"
expect_fail 1 "written by 2 ranks" -- "$DPT" train "${args[@]}" --resume "$TMP/a/ckpt-8.dpt"

# resume auto falls back past a corrupt newest checkpoint, with a warning
mkdir -p "$TMP/f"
cp "$TMP/a/ckpt-4.dpt" "$TMP/f/"
cp "$TMP/flip.dpt" "$TMP/f/ckpt-8.dpt"
timeout 300 "${MPI[@]}" "$DPT" train "${args[@]}" --checkpoint-dir "$TMP/f" --resume auto \
  --save "$TMP/fb.dpt" > "$TMP/f.txt" 2>&1 || bad "fallback resume: $(tail -3 "$TMP/f.txt")"
grep -q "skipping .*ckpt-8.dpt: .*checksum mismatch" "$TMP/f.txt" && ok || bad "no warning for the corrupt checkpoint: $(head -5 "$TMP/f.txt")"
grep -q "resumed from .*ckpt-4.dpt" "$TMP/f.txt" && ok || bad "did not fall back to ckpt-4"
r=$("$CMP" "$TMP/straight.dpt" "$TMP/fb.dpt" --exact) && ok || bad "fallback resume is not bit-exact: $r"

# kill -9 at random moments of a run that checkpoints every step: the newest file always loads
small=(--model "$SRC/tests/models/small-nobn.cfg" --data synthetic:4096:1:28:28:10 --epochs 50
       --threads 1 --batch 16 --no-progress --no-eval --checkpoint-dir "$TMP/k" --checkpoint-every 1)
touch "$TMP/k.stamp"
for round in 1 2 3; do
  "$DPT" train "${small[@]}" > /dev/null 2>&1 &
  pid=$!
  for _ in $(seq 300); do   # until this run has written a checkpoint of its own
    [[ -n $(find "$TMP/k" -name 'ckpt-*.dpt' -newer "$TMP/k.stamp" 2> /dev/null) ]] && break
    sleep 0.05
  done
  sleep "0.$((RANDOM % 10))"   # then at a random moment, most likely inside a write
  kill -9 $pid; wait $pid 2> /dev/null
  newest=$(ls "$TMP/k" | sed -n 's/^ckpt-\([0-9]*\)\.dpt$/\1/p' | sort -n | tail -1)
  out=$("$DPT" train "${small[@]}" --resume auto --max-steps 1 2>&1) || true
  [[ -n $newest && $out == *"resumed from $TMP/k/ckpt-$newest.dpt"* && $out != *skipping* ]] && ok \
    || bad "after kill -9 (round $round): newest ckpt-$newest; resume said: $(grep -v '^ ' <<< "$out" | head -3)"
  touch "$TMP/k.stamp"
done
finish
