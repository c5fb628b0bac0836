#!/usr/bin/env bash
# Training as a Slurm job on a real one-node Slurm (munged + slurmctld + slurmd started for this
# test by launch/slurm/slurm-local.sh in a temp dir on a free port, stopped on exit): sbatch of
# launch/slurm/dptrain.sbatch with 2 tasks x 1 CPU runs `srun --mpi=pmix dptrain train` on a
# little synthetic data; the job must complete, print the final accuracy line, and the metrics
# file must end with a "final" record for 2 ranks of 1 thread (cpus-per-task -> threads).
# Then a second job is signalled (USR1, as before a time limit or on preemption): it checkpoints,
# requeues itself, resumes, and ends with the bits of an uninterrupted run.
# Skipped (exit 77) with the reason only where Slurm cannot run here: not root, or the
# slurm/munge packages are missing and cannot be installed. Takes about 15 s with the packages
# installed (the first run installs them with apt: about 30 s more).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SL=$SRC/launch/slurm/slurm-local.sh
SB=$SRC/launch/slurm/dptrain.sbatch
if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP: a local Slurm needs root (slurmd runs as root), uid is $(id -u)"
  exit 77
fi
[[ -x $DPT ]] || { echo "FAIL: $DPT is not an executable"; exit 1; }
DPT=$(realpath "$DPT") SRC=$(realpath "$SRC")   # the job runs in another directory

export SLURM_LOCAL_DIR
SLURM_LOCAL_DIR=$(mktemp -d /tmp/dpt_slurm_XXXXXX)   # its own dir: munged wants a 0755 path
cleanup() {
  "$SL" stop > /dev/null 2>&1 || true
  rm -rf "$SLURM_LOCAL_DIR" "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# a free slurmctld port with a free slurmd port after it
port_busy() { (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }
for _ in $(seq 50); do
  SLURM_LOCAL_PORT=$((20000 + (RANDOM * 32768 + RANDOM) % 30000))
  port_busy "$SLURM_LOCAL_PORT" || port_busy $((SLURM_LOCAL_PORT + 1)) || break
done
export SLURM_LOCAL_PORT SLURM_LOCAL_NODES=1 SLURM_LOCAL_CPUS=2

t0=$SECONDS
rc=0
envline=$("$SL" start 2> "$TMP/start.log") || rc=$?
if [[ $rc -eq 3 ]]; then
  echo "SKIP: Slurm cannot run here: $(grep -m1 UNAVAILABLE "$TMP/start.log" | sed 's/.*UNAVAILABLE: //')"
  exit 77
elif [[ $rc -ne 0 ]]; then
  echo "FAIL: slurm-local.sh start exited $rc:"
  tail -n 20 "$TMP/start.log"
  for f in "$SLURM_LOCAL_DIR"/log/*.log; do [[ -f $f ]] && { echo "--- $f"; tail -n 10 "$f"; }; done
  exit 1
fi
eval "$envline"   # export SLURM_CONF=...
echo "slurm up on port $SLURM_LOCAL_PORT in $((SECONDS - t0)) s"

# 2 tasks x 1 CPU on one node; the job's own safety limit is 5 minutes
cd "$TMP"
jid=$(DPTRAIN=$DPT sbatch --parsable --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --time=5 \
  -J dpt-e2e -o "$TMP/job-%j.out" "$SB" \
  --model "$SRC/models/fmnist-cnn.cfg" --data synthetic:256:1:28:28:10 --epochs 1 --batch 32 \
  --lr 0.05 --seed 3 --metrics "$TMP/metrics.jsonl" 2> "$TMP/sbatch.err") || true
[[ $jid =~ ^[0-9]+$ ]] || { echo "FAIL: sbatch gave no job id: $jid $(cat "$TMP/sbatch.err")"; exit 1; }

state() { scontrol show job "$1" 2> /dev/null | grep -oP 'JobState=\K\S+' || echo UNKNOWN; }
t1=$SECONDS
while :; do
  st=$(state "$jid")
  case $st in PENDING|CONFIGURING|RUNNING|COMPLETING|REQUEUED|SUSPENDED) ;; *) break ;; esac
  if ((SECONDS - t1 > 180)); then
    bad "job $jid still $st after 180 s; cancelled"
    scancel "$jid" || true
    break
  fi
  sleep 1   # a bounded poll of the job state: the loop ends on the state, not on the time
done
out=$(cat "$TMP/job-$jid.out" 2> /dev/null || true)
echo "job $jid: $st after $((SECONDS - t1)) s"
[[ $st == COMPLETED ]] && ok || bad "job ended $st: $(scontrol show job "$jid" | grep -o 'ExitCode=\S*'); output: $out"
[[ $out == *"srun --mpi=pmix --cpus-per-task=1"* ]] && ok || bad "the script did not launch with srun --mpi=pmix: $out"
[[ $out == *"dptrain exited with status 0"* ]] && ok || bad "dptrain did not exit 0: $out"

finals=$(grep -E '^final test accuracy: [0-9]+\.[0-9]{2}% \([0-9]+/256\)' <<< "$out" || true)
nfinal=$(grep -c . <<< "$finals" || true)
((nfinal == 1)) && ok || bad "want exactly one final accuracy line (rank 0), got $nfinal: $out"

final=$(grep '"kind":"final"' "$TMP/metrics.jsonl" 2> /dev/null | tail -n 1 || true)
[[ -n $final ]] && ok || bad "no final record in the metrics file: $(cat "$TMP/metrics.jsonl" 2> /dev/null)"
[[ $final == *'"ranks":2,'* ]] && ok || bad "final record: want \"ranks\":2: $final"
[[ $final == *'"threads":1,'* ]] && ok || bad "final record: want \"threads\":1 (--cpus-per-task=1): $final"
# the printed accuracy is the recorded one
acc=$(sed -n 's/.*"test_acc":\([0-9.]*\).*/\1/p' <<< "$final")
pct=$(awk -v a="${acc:-x}" 'BEGIN { printf "%.2f%%", 100 * a }')
[[ -n $acc && $finals == *"accuracy: $pct ("* ]] && ok || bad "final line(s) '$finals' do not show test_acc $acc"

# Preemption: USR1 to the batch shell -> the ranks checkpoint and exit 75 -> the script requeues
# the job -> the requeued run resumes; its final parameters must be the bits of an uninterrupted
# run (the same flags under mpirun, outside Slurm).
# Events, not times (a signal sent 2 s after training began came after the end of the job on a
# fast machine): once both ranks catch USR1 (SigCgt; dptrain sets its handler before MPI_Init)
# they are stopped (SIGSTOP), so they cannot finish first; USR1 goes to the batch shell, which
# forwards it through srun; once it is pending on both stopped ranks (ShdPnd/SigPnd) they go on
# (SIGCONT) and stop after their first step. slurmstepd and srun do not mind stopped tasks.
req=(--model "$SRC/models/fmnist-cnn.cfg" --data synthetic:2048:1:28:28:10 --epochs 2 --batch 32
     --lr 0.05 --seed 3 --allreduce ring --no-eval)
jid=$(DPTRAIN=$DPT sbatch --parsable --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --time=8 \
  -J dpt-requeue -o "$TMP/rq-%j.out" "$SB" "${req[@]}" --checkpoint-dir "$TMP/rq-ckpt" \
  --save "$TMP/rq.dpt" 2> "$TMP/sbatch.err") || true
[[ $jid =~ ^[0-9]+$ ]] || { echo "FAIL: sbatch gave no job id: $jid $(cat "$TMP/sbatch.err")"; exit 1; }
t1=$SECONDS
usr1() {   # usr1 PID FIELD...: true if /proc/PID/status shows SIGUSR1 (bit 10) in one of the masks
  local f m
  for f in "${@:2}"; do
    m=$(sed -n "s/^$f:[[:space:]]*//p" "/proc/$1/status" 2> /dev/null) || true
    (((16#${m:-0}) & 0x200)) && return 0
  done
  return 1
}
ranks=()   # the job's two dptrain processes (srun and the batch shell do not start with $DPT)
until ((${#ranks[@]} == 2)) || ((SECONDS - t1 > 120)); do
  ranks=()
  for p in $(pgrep -f -- "^$DPT train .*--checkpoint-dir $TMP/rq-ckpt"); do
    usr1 "$p" SigCgt && ranks+=("$p")
  done
  ((${#ranks[@]} == 2)) || sleep 0.02
done
((${#ranks[@]} == 2)) || bad "requeue job $jid: no 2 ranks catching USR1 after 120 s (${ranks[*]})"
kill -STOP "${ranks[@]}" 2> /dev/null || bad "cannot stop the ranks ${ranks[*]}"
# USR1 only once every thread has stopped: a thread still running (the stop is asynchronous)
# could take it in sigwait, and the pending check below would never see it
running() { local p; for p; do grep -h '^State:' /proc/"$p"/task/*/status; done 2> /dev/null | grep -vq stopped; }
until ! running "${ranks[@]}" || ((SECONDS - t1 > 120)); do sleep 0.02; done
scancel --signal=USR1 --batch "$jid" || bad "scancel --signal=USR1 failed"
for p in "${ranks[@]}"; do
  until usr1 "$p" ShdPnd SigPnd || [[ ! -e /proc/$p ]] || ((SECONDS - t1 > 120)); do sleep 0.05; done
  usr1 "$p" ShdPnd SigPnd || bad "USR1 did not reach the stopped rank $p: $(grep -h . "$TMP/rq-$jid.out")"
done
kill -CONT "${ranks[@]}" 2> /dev/null || true
while :; do
  st=$(state "$jid")
  restarts=$(scontrol show job "$jid" 2> /dev/null | grep -oP 'Restarts=\K[0-9]+' || echo 0)
  [[ $st == COMPLETED || $st == FAILED || $st == CANCELLED || $st == TIMEOUT || $st == UNKNOWN ]] && ((restarts > 0 || SECONDS - t1 > 300)) && break
  [[ $st == COMPLETED ]] && break
  ((SECONDS - t1 > 300)) && { bad "requeue job $jid still $st after 300 s"; scancel "$jid" || true; break; }
  sleep 1
done
rq=$(cat "$TMP/rq-$jid.out" 2> /dev/null || true)
[[ $st == COMPLETED && $restarts -ge 1 ]] && ok || bad "requeue job: $st after $restarts restarts: $rq"
[[ $rq == *"dptrain exited with status 75"* && $rq == *"requeueing job $jid"* ]] && ok || bad "no checkpoint-and-requeue in: $rq"
[[ $rq == *"resumed from $TMP/rq-ckpt/ckpt-"* ]] && ok || bad "the requeued run did not resume: $rq"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 timeout 300 \
  mpirun --oversubscribe --bind-to none -np 2 "$DPT" train "${req[@]}" --threads 1 --no-progress \
  --save "$TMP/straight.dpt" > "$TMP/straight.txt" 2>&1 || bad "uninterrupted run failed: $(tail -3 "$TMP/straight.txt")"
r=$("$(dirname "$DPT")/tests/cmp_weights" "$TMP/straight.dpt" "$TMP/rq.dpt" --exact) && ok \
  || bad "preempted + requeued job differs from the uninterrupted run: $r"

# stop: no daemon of this cluster may be left (munged names the dir on its command line, the
# others carry SLURM_CONF in their environment)
"$SL" stop > /dev/null 2>&1 || bad "slurm-local.sh stop failed"
left=0
for d in /proc/[0-9]*; do
  [[ $d == "/proc/$$" || $d == "/proc/$BASHPID" ]] && continue
  { tr '\0' ' ' < "$d/cmdline"; tr '\0' '\n' < "$d/environ"; } 2> /dev/null \
    | grep -qF "$SLURM_LOCAL_DIR" && left=$((left + 1))
done
((left == 0)) && ok || bad "$left processes of the test cluster still running after stop"
finish
