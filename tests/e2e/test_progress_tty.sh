#!/usr/bin/env bash
# The progress bar on a real terminal (tmux), under launch/dptrain-run (so under mpirun, where a
# rank's stderr is a pipe): one line redrawn in place, never wider than the terminal, at 80 and
# 120 columns. Then Ctrl-C, as a user stops it: the ranks finish their step, write a checkpoint
# and the job exits 75 (resumable), without mpirun's abort banner. Skipped (77) only without tmux (scripts/install-deps.sh installs it).
source "$(dirname "$0")/lib.sh"
command -v tmux > /dev/null || { echo "SKIP: tmux is not installed"; exit 77; }
DPT=$(realpath "$DPT") SRC=$(realpath "$SRC")
export TMUX_TMPDIR=$TMP   # a tmux server of this test's own
trap 'tmux kill-server 2> /dev/null; rm -rf "$TMP"' EXIT
for cols in 80 120; do
  tmux new-session -d -s "p$cols" -x "$cols" -y 40 || { bad "tmux new-session failed"; continue; }
  # long enough to be drawing when we look on a fast machine, and stopped by us
  tmux send-keys -t "p$cols" "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 DPTRAIN=$DPT \
$SRC/launch/dptrain-run -n 2 -t 1 -- train --model $SRC/models/fmnist-cnn.cfg \
--data synthetic:4096:1:28:28:10 --batch 16 --epochs 200 --allreduce ring --no-eval --checkpoint-dir $TMP/ck$cols; echo DONE rc=\$?" Enter
  # Until a bar has been redrawn (any epoch's, its step count past 1), at most 300 s: under load
  # the start-up alone can take a minute, and a Ctrl-C before the ranks run is not the case
  # under test (an interactive shell that has not started the command yet drops it).
  screen="" t0=$SECONDS drawn=0
  while ((SECONDS - t0 < 300)); do
    screen=$(tmux capture-pane -p -t "p$cols")
    grep -qE "^epoch [0-9]+/200 \[.*\] +([2-9]|[0-9]{2,3})/128 " <<< "$screen" && { drawn=1; break; }
    sleep 0.1
  done
  ((drawn)) || bad "$cols columns: no progress bar after 300 s: $screen"
  tmux send-keys -t "p$cols" C-c   # the ranks stop after their step; wait until they are gone
  after="" t0=$SECONDS
  while ((SECONDS - t0 < 300)); do
    after=$(tmux capture-pane -p -J -S -100 -t "p$cols")
    grep -q "^DONE" <<< "$after" && break
    sleep 0.1
  done
  grep -q "^DONE rc=75$" <<< "$after" && ok || bad "$cols columns: Ctrl-C: want exit 75: $after"
  grep -q "checkpoint written" <<< "$after" && ok || bad "$cols columns: Ctrl-C: no checkpoint: $after"
  [[ -e $TMP/ck$cols/latest ]] && ok || bad "$cols columns: Ctrl-C: no $TMP/ck$cols/latest"
  grep -qE "Primary job|mpirun detected|abort" <<< "$after" && bad "$cols columns: mpirun's banner: $after" || ok
  bars=$(grep -c "ETA" <<< "$screen" || true)
  widest=$(grep "ETA" <<< "$screen" | awk '{ if (length($0) > w) w = length($0) } END { print w + 0 }')
  [[ $bars -eq 1 ]] && ok || bad "$cols columns: want one bar line, got $bars: $screen"
  ((widest > 0 && widest < cols)) && ok || bad "$cols columns: the bar is $widest wide"
  [[ $screen == *"] "* ]] && ok || bad "$cols columns: no bar drawn: $screen"
  echo "--- $cols columns:"; grep "ETA" <<< "$screen"; tail -6 <<< "$after"
  tmux kill-session -t "p$cols"
done
finish
