#!/usr/bin/env bash
# Checkpoints and resume (issues 6, 13, 17):
#  - bit-exact resume: a run resumed from its checkpoint of step 1, 4 (mid-epoch), 16 (epoch end)
#    or 32 (the last: a completed run) ends with the same bits as the straight run (np 2: every
#    rank's BN statistics are in the checkpoint), and so does a --max-steps run, and an AdamW run
#    (another --optimizer's file is refused);
#  - a stop signal during the final step: the run completes and exits 0;
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

timeout 300 "${MPI[@]}" "$DPT" train "${args[@]}" --checkpoint-dir "$TMP/a" --checkpoint-every 1 \
  --keep-checkpoints 100 --save "$TMP/straight.dpt" > "$TMP/a.txt" 2>&1 || bad "straight run: $(tail -3 "$TMP/a.txt")"
[[ -f $TMP/a/ckpt-1.dpt && -f $TMP/a/ckpt-32.dpt && $(cat "$TMP/a/latest") == ckpt-32.dpt ]] && ok \
  || bad "checkpoints: $(ls "$TMP/a")"
# every boundary: the first step, mid-epoch, an epoch end, and the last step (the run had completed:
# its epoch end, BN statistics averaged before the save, is still to run after the checkpoint)
for c in 1 4 16 32; do
  timeout 300 "${MPI[@]}" "$DPT" train "${args[@]}" --resume "$TMP/a/ckpt-$c.dpt" --save "$TMP/res$c.dpt" \
    > "$TMP/b$c.txt" 2>&1 || bad "resume run from ckpt-$c: $(tail -3 "$TMP/b$c.txt")"
  grep -q "resumed from .*ckpt-$c.dpt: step $c" "$TMP/b$c.txt" && ok || bad "no resume line: $(head -3 "$TMP/b$c.txt")"
  r=$("$CMP" "$TMP/straight.dpt" "$TMP/res$c.dpt" --exact) && ok || bad "resume from step $c is not bit-exact: $r"
done
# --resume auto of the completed run: the final line of the run itself (it printed 0/0 accuracy)
want=$(grep "^final" "$TMP/a.txt" | sed 's/  wall.*param_crc/ param_crc/')
got=$(grep "^final" "$TMP/b32.txt" | sed 's/  wall.*param_crc/ param_crc/')
[[ -n $want && $got == "$want" ]] && ok || bad "resumed completed run: '$got', want '$want'"
# a run cut by --max-steps in mid-epoch: its last checkpoint resumes to the same bits
timeout 300 "${MPI[@]}" "$DPT" train "${args[@]}" --max-steps 20 --checkpoint-dir "$TMP/m" \
  --save "$TMP/m1.dpt" > "$TMP/m1.txt" 2>&1 || bad "--max-steps run: $(tail -3 "$TMP/m1.txt")"
timeout 300 "${MPI[@]}" "$DPT" train "${args[@]}" --max-steps 20 --checkpoint-dir "$TMP/m" \
  --resume auto --save "$TMP/m2.dpt" > "$TMP/m2.txt" 2>&1 || bad "--max-steps resume: $(tail -3 "$TMP/m2.txt")"
grep -q "resumed from .*ckpt-20.dpt: step 20" "$TMP/m2.txt" && ok || bad "no resume from ckpt-20: $(head -3 "$TMP/m2.txt")"
r=$("$CMP" "$TMP/m1.dpt" "$TMP/m2.dpt" --exact) && ok || bad "resume at --max-steps is not bit-exact: $r"

# AdamW (its m, v and update count in the checkpoint): a resume from mid-epoch ends with the
# straight run's bits; resuming its checkpoint as an sgd run is refused naming the optimizer,
# even when the flag comparison is told to ignore it
adam=("${args[@]}" --epochs 1 --optimizer adamw --lr 0.002 --weight-decay 0.05)
timeout 300 "${MPI[@]}" "$DPT" train "${adam[@]}" --checkpoint-dir "$TMP/adam" --checkpoint-every 1 \
  --keep-checkpoints 100 --save "$TMP/adam.dpt" > "$TMP/adam.txt" 2>&1 || bad "adamw run: $(tail -3 "$TMP/adam.txt")"
timeout 300 "${MPI[@]}" "$DPT" train "${adam[@]}" --resume "$TMP/adam/ckpt-5.dpt" --save "$TMP/adam5.dpt" \
  > "$TMP/adam5.txt" 2>&1 || bad "adamw resume: $(tail -3 "$TMP/adam5.txt")"
r=$("$CMP" "$TMP/adam.dpt" "$TMP/adam5.dpt" --exact) && ok || bad "adamw resume from step 5 is not bit-exact: $r"
r=$("$CMP" "$TMP/adam.dpt" "$TMP/res32.dpt" 2>&1) && bad "adamw and sgd runs gave the same weights" || ok
out=$(timeout 300 "$DPT" train "${args[@]}" --batch 64 --epochs 1 --lr 0.002 --weight-decay 0.05 \
      --resume "$TMP/adam/ckpt-5.dpt" 2>&1) && bad "an adamw checkpoint resumed as sgd" || true
[[ $out == *optimizer*adamw* && $out == *ckpt-5.dpt* ]] && ok || bad "sgd resume of adamw: $(tail -3 <<< "$out")"
out=$(timeout 300 "$DPT" train "${args[@]}" --batch 64 --epochs 1 --lr 0.002 --weight-decay 0.05 \
      --resume "$TMP/adam/ckpt-5.dpt" --resume-ignore optimizer 2>&1) && bad "adamw resumed as sgd (ignored)" || true
[[ $out == *"cannot change on a resume"* ]] && ok || bad "sgd resume of adamw, ignored: $(tail -3 <<< "$out")"

# ranks of the job whose command line holds $1 (the checkpoint dir), and a signal to all of them
ranks() { pgrep -f -- "^$DPT train .*--checkpoint-dir $1 "; }
signal_ranks() { local p; for p in $(ranks "$1"); do kill "-$2" "$p"; done; }

# SIGUSR1 to both ranks mid-run -> checkpoint + exit 75 -> resume auto -> the straight run's bits.
# The ranks are stopped (SIGSTOP) when training starts and the signal is sent while they are
# stopped, so it lands in the first steps however fast the machine is.
timeout 300 "${MPI[@]}" "$DPT" train "${args[@]}" --checkpoint-dir "$TMP/s" --checkpoint-every 1000 \
  --save "$TMP/sig.dpt" > "$TMP/s.txt" 2>&1 &
job=$!
wait_for "gradient bucket" "$TMP/s.txt" || bad "SIGUSR1: the run did not start"   # after setup
signal_ranks "$TMP/s" STOP
# the stop signals are blocked in every thread of every rank but the one in sigwait (a handler
# interrupting oneDNN's kernels corrupted the heap): SIGINT, SIGUSR1, SIGTERM = 0x4202
masks=$(for p in $(ranks "$TMP/s"); do
          for t in /proc/"$p"/task/*; do
            [[ $(cat "$t/wchan" 2> /dev/null) == *sigtimedwait* ]] && continue
            awk '/^SigBlk/ {print $2}' "$t/status"
          done
        done)
unblocked=$(for m in $masks; do (( (16#$m & 16#4202) == 16#4202 )) || echo "$m"; done)
[[ -n $masks && -z $unblocked ]] && ok || bad "stop signals not blocked in every thread: ${masks:-no ranks}"
# the ranks only (as srun delivers it); mpirun would forward a signal of its own as well
[[ -n $(ranks "$TMP/s") ]] || bad "no rank to signal"
signal_ranks "$TMP/s" USR1
signal_ranks "$TMP/s" CONT
rc=0
wait $job || rc=$?
[[ $rc -eq 75 ]] && ok || bad "SIGUSR1: exit $rc, want 75: $(tail -3 "$TMP/s.txt")"
grep -q "^stopped after step .*checkpoint written" "$TMP/s.txt" && ok || bad "no stop line: $(tail -3 "$TMP/s.txt")"
timeout 300 "${MPI[@]}" "$DPT" train "${args[@]}" --checkpoint-dir "$TMP/s" --resume auto \
  --save "$TMP/sig.dpt" > "$TMP/s2.txt" 2>&1 || bad "resume auto after the signal: $(tail -3 "$TMP/s2.txt")"
grep -q "resumed from" "$TMP/s2.txt" && ok || bad "resume auto did not resume: $(head -3 "$TMP/s2.txt")"
r=$("$CMP" "$TMP/straight.dpt" "$TMP/sig.dpt" --exact) && ok || bad "signal + resume is not bit-exact: $r"

# a stop signal during the final step (here the only one): the run is complete, so it finishes
# (evaluation, save) and exits 0, and Slurm does not requeue it; the checkpoint is the last step's
one=(--model "$SRC/models/fmnist-cnn.cfg" --data synthetic:256:1:28:28:10 --epochs 1 --threads 1
     --lr 0.05 --batch 128 --allreduce ring --no-progress)
timeout 300 "${MPI[@]}" "$DPT" train "${one[@]}" --save "$TMP/one.dpt" > "$TMP/one.txt" 2>&1 \
  || bad "one-step run: $(tail -3 "$TMP/one.txt")"
timeout 300 "${MPI[@]}" "$DPT" train "${one[@]}" --checkpoint-dir "$TMP/l" --save "$TMP/late.dpt" \
  > "$TMP/l.txt" 2>&1 &
job=$!
wait_for "gradient bucket" "$TMP/l.txt" || bad "final-step signal: the run did not start"
signal_ranks "$TMP/l" STOP
signal_ranks "$TMP/l" USR1
signal_ranks "$TMP/l" CONT
rc=0
wait $job || rc=$?
[[ $rc -eq 0 ]] && grep -q "^the stop request came with the final step" "$TMP/l.txt" \
  && grep -q "^final test accuracy" "$TMP/l.txt" && ! grep -q "^stopped after" "$TMP/l.txt" && ok \
  || bad "SIGUSR1 in the final step: exit $rc, want 0 with a completion line: $(tail -4 "$TMP/l.txt")"
[[ $(cat "$TMP/l/latest" 2> /dev/null) == ckpt-1.dpt ]] && ok || bad "final-step signal: latest is not ckpt-1"
r=$("$CMP" "$TMP/one.dpt" "$TMP/late.dpt" --exact) && ok || bad "final-step signal changed the result: $r"

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
refused "$TMP/straight.dpt: bad magic (a weights file" -- "${MPI[@]}" "$DPT" train "${args[@]}" --resume "$TMP/straight.dpt"
# one rank with the per-rank batch of two changes the global batch: refused, naming it
expect_fail 1 "--global-batch 64 (this run: 32)" -- "$DPT" train "${args[@]}" --resume "$TMP/a/ckpt-8.dpt"

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
  "$DPT" train "${small[@]}" --resume auto > /dev/null 2>&1 &   # round 1: nothing to resume
  pid=$!
  for _ in $(seq 300); do   # until this run has written a checkpoint of its own
    [[ -n $(find "$TMP/k" -name 'ckpt-*.dpt' -newer "$TMP/k.stamp" 2> /dev/null) ]] && break
    sleep 0.05
  done
  sleep "0.$((RANDOM % 10))"   # then at a random moment, most likely inside a write
  kill -9 $pid; wait $pid 2> /dev/null
  newest=$(ls "$TMP/k" | sed -n 's/^ckpt-\([0-9]*\)\.dpt$/\1/p' | sort -n | tail -1)
  out=$("$DPT" train "${small[@]}" --resume auto --max-steps 1 --resume-ignore max-steps 2>&1) || true
  [[ -n $newest && $out == *"resumed from $TMP/k/ckpt-$newest.dpt"* && $out != *skipping* ]] && ok \
    || bad "after kill -9 (round $round): newest ckpt-$newest; resume said: $(grep -v '^ ' <<< "$out" | head -3)"
  touch "$TMP/k.stamp"
done
finish
