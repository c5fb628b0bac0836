#!/usr/bin/env bash
# A new user's first hour (issue 14): resume, metrics and checkpoint directories never lose data.
#  1. --resume auto of a finished run: its own final line, and the metrics keep every epoch record;
#  2. a stop and a resume: the metrics file holds each step and epoch record once, as a straight
#     run's, after a config record (and a resume record);
#  3. --resume auto on another rank count: refused when the global batch changes, the old run's
#     files untouched; resumed with the same global batch (np 2 -> 1 -> 2);
#  4. other flags: refused naming each with both values; --resume-ignore lets one through;
#  5. --save to a missing directory or a directory: refused before training;
#  6. --checkpoint-dir: a second job is refused while the first holds it; a fresh run where
#     checkpoints exist is refused, --force-new moves them aside;
#  7. --metrics /dev/full: exit 1 naming the file;
#  8. dptrain eval takes a checkpoint, and under mpirun prints once;
#  9. DIR/best.dpt holds the weights of the epoch with the best test accuracy (eval gives it
#     again), DIR/best names that epoch, and a stop + resume leaves the same files.
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
MPI=(mpirun --oversubscribe --bind-to none)
CMP=$(dirname "$DPT")/tests/cmp_weights
args=(--model "$SRC/models/fmnist-cnn.cfg" --data synthetic:1024:1:28:28:10 --epochs 2 --threads 1
      --lr 0.05 --allreduce ring --no-progress --log-every 5)
run() { local np=$1; shift; timeout 300 "${MPI[@]}" -np "$np" "$DPT" train "${args[@]}" "$@"; }
# the records of a metrics file without the run-dependent fields (timings, config/resume records)
records() { grep -E '"kind":"(step|epoch|final)"' "$1" | sed -E 's/,"(img_s|t_[a-z_]+|wall_s|bytes_sent)":[^,}]*//g'; }

# --- 1. a finished run, resumed
run 2 --batch 32 --checkpoint-dir "$TMP/a" --metrics "$TMP/a.jsonl" --save "$TMP/a.dpt" > "$TMP/a.txt" 2>&1 \
  || bad "straight run: $(tail -3 "$TMP/a.txt")"
head -1 "$TMP/a.jsonl" | grep -q '^{"kind":"config","version":"[^"]*","git":"[^"]*".*"ranks":2,.*"flags":{.*"lr":"0.05"' \
  && ok || bad "no config record first: $(head -c 300 "$TMP/a.jsonl")"
cp "$TMP/a.jsonl" "$TMP/a0.jsonl"
run 2 --batch 32 --checkpoint-dir "$TMP/a" --metrics "$TMP/a.jsonl" --resume auto --save "$TMP/a2.dpt" \
  > "$TMP/a2.txt" 2>&1 || bad "resume of a finished run: $(tail -3 "$TMP/a2.txt")"
want=$(grep "^final" "$TMP/a.txt" | sed 's/  wall.*param_crc/ param_crc/')
got=$(grep "^final" "$TMP/a2.txt" | sed 's/  wall.*param_crc/ param_crc/')
[[ -n $want && $got == "$want" ]] && ok || bad "resumed finished run: '$got', want '$want'"
[[ $(grep -c '"kind":"epoch"' "$TMP/a.jsonl") -eq 2 && $(grep -c '"kind":"final"' "$TMP/a.jsonl") -eq 1 ]] \
  && ok || bad "metrics after resuming a finished run: $(cut -c1-60 "$TMP/a.jsonl")"
[[ $(records "$TMP/a.jsonl" | sed 's/"img_s":[^,]*//') == $(records "$TMP/a0.jsonl" | sed 's/"img_s":[^,]*//') ]] \
  && ok || bad "records changed by resuming a finished run"
r=$("$CMP" "$TMP/a.dpt" "$TMP/a2.dpt" --exact) && ok || bad "resumed finished run: other weights: $r"

# stopped NP DIR CKPT ARGS...: train on NP ranks in DIR; once DIR/CKPT exists, SIGUSR1 to the
# ranks (stopped first, so that they cannot finish before it): the run must exit 75
stopped() {
  local np=$1 dir=$2 ck=$3 job rc=0
  shift 3
  run "$np" --checkpoint-dir "$dir" --checkpoint-every 10 "$@" > "$dir.txt" 2>&1 &
  job=$!
  for _ in $(seq 3000); do [[ -e $dir/$ck ]] && break; sleep 0.02; done
  pkill -STOP -f -- "^$DPT train .*--checkpoint-dir $dir "
  pkill -USR1 -f -- "^$DPT train .*--checkpoint-dir $dir "
  pkill -CONT -f -- "^$DPT train .*--checkpoint-dir $dir "
  wait $job || rc=$?
  [[ $rc -eq 75 ]] && ok || bad "SIGUSR1 after $ck: exit $rc: $(tail -2 "$dir.txt")"
}

# --- 2. stopped at some step >= 10, resumed: each record once
stopped 2 "$TMP/s" ckpt-10.dpt --batch 32 --metrics "$TMP/s.jsonl"
run 2 --batch 32 --checkpoint-dir "$TMP/s" --metrics "$TMP/s.jsonl" --resume auto > "$TMP/s2.txt" 2>&1 \
  || bad "resume after the stop: $(tail -3 "$TMP/s2.txt")"
[[ $(grep -c '"kind":"resume"' "$TMP/s.jsonl") -eq 1 && $(grep -c '"kind":"config"' "$TMP/s.jsonl") -eq 2 ]] \
  && ok || bad "want 1 resume and 2 config records: $(cut -c1-40 "$TMP/s.jsonl")"
# step records (their loss averages the steps since the last record: not after a resume) and
# epoch records match the straight run's
steps() { records "$1" | grep '"kind":"step"' | sed -E 's/"loss":[^,]*,//'; }
[[ $(steps "$TMP/s.jsonl") == "$(steps "$TMP/a0.jsonl")" ]] && ok \
  || bad "step records after stop + resume differ: $(diff <(steps "$TMP/s.jsonl") <(steps "$TMP/a0.jsonl") | head -5)"
[[ $(records "$TMP/s.jsonl" | grep -v '"kind":"step"') == "$(records "$TMP/a0.jsonl" | grep -v '"kind":"step"')" ]] \
  && ok || bad "epoch/final records after stop + resume differ"

# --- 3. another rank count in the same directory
sums() { (cd "$1" && md5sum ckpt-*.dpt latest); }
before=$(sums "$TMP/s")
rc=0; out=$(run 1 --batch 32 --checkpoint-dir "$TMP/s" --resume auto 2>&1) || rc=$?
[[ $rc -eq 1 && $out == *"--global-batch 64 (this run: 32)"* ]] && ok || bad "np 1 with batch 32: exit $rc: $out"
[[ $(sums "$TMP/s") == "$before" ]] && ok || bad "the refused resume changed the checkpoint directory"
# np 2 -> np 1 -> np 2, the global batch 64 kept: not bit-exact (the sums run in another order,
# and one rank's BN batch statistics are over 64 samples, not 32), but as accurate
stopped 2 "$TMP/r" ckpt-10.dpt --batch 32
stopped 1 "$TMP/r" ckpt-20.dpt --global-batch 64 --resume auto
grep -q "resumed on 1 rank a checkpoint of 2" "$TMP/r.txt" && ok || bad "no rank-count line: $(head -3 "$TMP/r.txt")"
run 2 --batch 32 --checkpoint-dir "$TMP/r" --resume auto --save "$TMP/r.dpt" > "$TMP/r2.txt" 2>&1 \
  || bad "np 2 after np 1: $(tail -2 "$TMP/r2.txt")"
grep -q "resumed on 2 ranks a checkpoint of 1" "$TMP/r2.txt" && grep -q "^final test accuracy" "$TMP/r2.txt" \
  && ok || bad "np 2 -> 1 -> 2 did not finish: $(tail -2 "$TMP/r2.txt")"
echo "np 2 -> 1 -> 2: $(grep '^final' "$TMP/r2.txt" | sed 's/  wall.*//'); straight np 2: $(grep '^final' "$TMP/a.txt" | sed 's/  wall.*//'); weights: $("$CMP" "$TMP/a.dpt" "$TMP/r.dpt" 1e30)"
# --- 4. other flags: refused naming them; --resume-ignore
rc=0; out=$(run 2 --batch 32 --epochs 3 --lr 0.1 --checkpoint-dir "$TMP/s" --resume auto 2>&1) || rc=$?
[[ $rc -eq 1 && $out == *"--epochs 2 (this run: 3)"* && $out == *"--lr 0.05 (this run: 0.1)"* \
   && $out == *"--resume-ignore epochs,lr"* ]] && ok || bad "other flags: exit $rc: $out"
run 2 --batch 32 --epochs 3 --checkpoint-dir "$TMP/s" --resume auto --resume-ignore epochs > "$TMP/e.txt" 2>&1 \
  && grep -q "changed on purpose (--resume-ignore): --epochs 2 (this run: 3)" "$TMP/e.txt" && ok \
  || bad "--resume-ignore epochs: $(tail -3 "$TMP/e.txt")"

# --- 5. --save checked before training
expect_fail 1 "--save $TMP/nowhere/w.dpt: directory $TMP/nowhere" -- "$DPT" train "${args[@]}" --batch 32 --save "$TMP/nowhere/w.dpt"
expect_fail 1 "is a directory" -- "$DPT" train "${args[@]}" --batch 32 --save "$TMP"

# --- 6. one job per checkpoint directory; no fresh run over another run's checkpoints
"$DPT" train "${args[@]}" --batch 32 --epochs 50 --checkpoint-dir "$TMP/l" > "$TMP/l.txt" 2>&1 &
job=$!
wait_for "total parameters" "$TMP/l.txt" || bad "lock holder did not start"
kill -STOP $job   # holds the lock for as long as the second job needs
expect_fail 1 "--checkpoint-dir $TMP/l is in use by another job (pid $job on" -- "$DPT" train "${args[@]}" --batch 32 --checkpoint-dir "$TMP/l" --resume auto
kill -CONT $job; kill -TERM $job; wait $job 2> /dev/null
expect_fail 1 "--checkpoint-dir $TMP/l holds 1 checkpoint of an earlier run (newest ckpt-" -- "$DPT" train "${args[@]}" --batch 32 --checkpoint-dir "$TMP/l"
"$DPT" train "${args[@]}" --batch 32 --max-steps 2 --checkpoint-dir "$TMP/l" --force-new > "$TMP/f.txt" 2>&1 \
  || bad "--force-new: $(tail -2 "$TMP/f.txt")"
aside=$(sed -n 's/^--force-new: the 1 checkpoint of the earlier run moved to //p' "$TMP/f.txt")
[[ -n $aside && -n $(ls "$aside"/ckpt-*.dpt 2> /dev/null) && -f $TMP/l/ckpt-2.dpt ]] && ok \
  || bad "--force-new did not keep the old checkpoint aside: $(cat "$TMP/f.txt" | head -3) $(ls -R "$TMP/l")"

# --- 7. metrics that cannot be written
expect_fail 1 "--metrics /dev/full: write failed: No space left on device" -- "$DPT" train "${args[@]}" --batch 32 --metrics /dev/full

# --- 8. eval of a checkpoint, sharded under mpirun, printed once
out=$(timeout 120 "${MPI[@]}" -np 2 "$DPT" eval --model "$SRC/models/fmnist-cnn.cfg" --data synthetic:1024:1:28:28:10 \
        --threads 1 --weights "$TMP/a/ckpt-32.dpt" 2>&1) || bad "eval of a checkpoint: $out"
[[ $(grep -c "^test accuracy: .*(.*/1024)" <<< "$out") -eq 1 ]] && ok || bad "eval under np 2: want one line: $out"

# --- 9. the best epoch: its weights, and which epoch it was, kept through a stop + resume
accs=$(sed -nE 's/^epoch ([0-9]+)\/2  train .* test loss [^ ]+ acc ([0-9.]+) .*/\1 \2/p' "$TMP/a.txt")
best=$(sort -k2,2gr -k1,1n <<< "$accs" | head -1)   # the first epoch with the highest accuracy
read -r be ba <<< "$best"
grep -qE "^best.dpt epoch $be step $((be * 16)) test_acc ${ba}[0-9]*$" "$TMP/a/best" && ok \
  || bad "DIR/best: '$(cat "$TMP/a/best" 2> /dev/null)', epochs: $accs"
out=$("$DPT" eval --model "$SRC/models/fmnist-cnn.cfg" --data synthetic:1024:1:28:28:10 --threads 1 \
        --weights "$TMP/a/best.dpt" 2>&1) || bad "eval of best.dpt: $out"
want=$(grep "^epoch $be/2  train" "$TMP/a.txt" | sed -E 's/.*test loss ([^ ]+) acc ([0-9.]+) .*/\1 \2/')
got=$(sed -nE 's/^test accuracy: ([0-9.]+)% .*test loss ([^ ]+) .*/\2 \1/p' <<< "$out" | awk '{ printf "%s %.4f", $1, $2 / 100 }')
[[ -n $want && $got == "$want" ]] && ok || bad "eval of best.dpt: '$got', epoch $be said '$want'"
[[ $(cat "$TMP/s/best" 2> /dev/null) == "$(cat "$TMP/a/best")" ]] && ok || bad "best after stop + resume: $(cat "$TMP/s/best" 2> /dev/null)"
r=$("$CMP" "$TMP/a/best.dpt" "$TMP/s/best.dpt" --exact) && ok || bad "best.dpt after stop + resume differs: $r"
"$DPT" train "${args[@]}" --epochs 1 --batch 32 --checkpoint-dir "$TMP/nb" --no-save-best --quiet > "$TMP/nb.txt" 2>&1 \
  || bad "--no-save-best: $(tail -2 "$TMP/nb.txt")"
[[ -e $TMP/nb/latest && ! -e $TMP/nb/best.dpt && ! -e $TMP/nb/best ]] && ok || bad "--no-save-best wrote: $(ls "$TMP/nb")"
finish
