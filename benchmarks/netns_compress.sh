#!/usr/bin/env bash
# Gradient compression across network-namespace hosts (issue 16): time to a fixed test accuracy,
# step time and bytes per step for every dptrain codec and for PyTorch DDP (gloo) with its comm
# hooks, on the same shaped links, the same model and the same per-rank batch.
#
# For every link rate (RATES) and contender, launch/netns/dpt-netns makes HOSTS hosts (one rank
# each) joined by a bridge and shapes every host's egress with tbf (dpt-netns up + shape), then:
#   dptrain  `dpt-netns run HOSTS -- dptrain train ... --compress CODEC` (mpirun inside host 0);
#   pytorch  benchmarks/torch_ddp_fmnist.py once per host, each process started in its namespace
#            with `ip netns exec`, RANK/WORLD_SIZE, MASTER_ADDR = host 0's address
#            (10.<subnet>.0.1), GLOO_SOCKET_IFNAME=mpi0 (gloo's TCP inside the namespace subnet);
# and takes the hosts down again (dpt-netns down, also on error or Ctrl-C). Both train
# fmnist-cnn on the real Fashion-MNIST with the same recipe: --batch BATCH per rank, constant LR
# (no warm-up), Nesterov momentum 0.9, weight decay 5e-4 on conv/fc weights only, label smoothing
# 0.1, no augmentation; 1 thread per rank. Every EVAL_EVERY steps both evaluate on the whole test
# set (10000 images, sharded over the ranks, BN statistics averaged first) and stop at the first
# evaluation with test accuracy >= TARGET (--stop-at-acc), or after MAX_STEPS steps.
#   time to accuracy (tta_s): training time until that evaluation, evaluations excluded (wall_s -
#     eval_s of the "eval" record; both sides time the same way); tta_wall_s includes them.
#   step time: median over windows of WINDOW steps (evaluations excluded), after the first window
#     and, for powersgd and topk, after COMPRESS_START (dptrain: global batch / the step records'
#     img_s; PyTorch: its windows).
#   bytes per step: rank 0's. dptrain: the step records' bytes_sent (payload rank 0 handed the
#     transport per step, real; equal on every rank with the ring, not with ALLREDUCE=auto's
#     tree or hier, see ALLREDUCE); PyTorch and Horovod: tx
#     bytes of rank 0's mpi0 per step in its timed windows
#     (/sys/class/net/mpi0/statistics, headers included), and the nominal payload its hook hands
#     gloo; both: wire_bytes_step_run = every host's mpi0 tx bytes over the whole run (start-up,
#     dptrain's all-reduce calibration and evaluations included) / hosts / steps.
# PowerSGD and top-k start after COMPRESS_START fp32 steps on both sides (dptrain
# --compress-start, torch start_powerSGD_iter; torch needs >= 2); fp16/bf16 from step 0.
#
# Why BATCH=4 per rank (global 16): fmnist-cnn has 468,010 parameters = 1.87 MB of fp32
# gradients; a ring all-reduce sends 2(p-1)/p x 1.87 MB = 2.81 MB per rank per step, 112 ms at
# 200 Mbit/s (25 MB/s), whatever the batch. The compute grows with the batch (4 ranks on 2
# cores). dptrain, fp32, ring, 40-step smoke runs at 200 Mbit/s, MTU 9000 (2026-12-03, AVX2
# EPYC, load ~6 from other work; step = global batch / img_s; medians of 4 step records):
#   per-rank batch   step    all-reduce (t_comm_s)   of it exposed      compute
#   4                137 ms  116 ms (85%)            92 ms (67%)        45 ms
#   8                151 ms  117 ms (78%)            67 ms (44%)        84 ms
#   16 (auto: hier)  194 ms  130 ms (68%)            25 ms (13%)       167 ms
# The all-reduce runs on a thread while backward runs; compression can only remove its exposed
# part, so step / compute bounds a codec's step-time gain: 3.0x at 4, 1.8x at 8, 1.15x at 16.
# B=4 is the largest batch whose exposed fp32 all-reduce is at least half of the step (at 8
# the all-reduce takes 78% of the step but 44% is exposed), and the only one of these where
# issue 16's 3x target can be reached at all; smaller batches put 2 images or fewer through each
# rank's batch norm. LR 0.02: 0.1 x 16/128 (dptrain's default rate is for global batch 128)
# rounded up, as a modest target favours the larger rate.
#
# Usage: benchmarks/netns_compress.sh [rounds=2]      (as root, after `make build`)
#   Rounds are interleaved: round 1 of every rate x contender, then round 2 (the contender
#   order rotating per round), so the shared machine's drift hits all alike. Every run appends
#   one JSON line to OUT tagged with session, round, rate, rate_Bps, hosts, mtu, contender,
#   impl, codec/hook, batch, load1 (the 1-minute load average at its start); then
#   benchmarks/summarize_netns_compress.py prints the table.
# Environment: RATES ("200mbit 1gbit"), HOSTS (4), BATCH (4, per rank), LR (0.02), TARGET (0.85),
#   EVAL_EVERY (100), MAX_STEPS (4000), WINDOW (20: dptrain --log-every, torch --window),
#   ALLREDUCE (dptrain --allreduce, ring: at one rank per host `auto` chose hier for the
#   1.5 MiB bucket, which reaches the other hosts through MPI sub-communicators whose traffic
#   bytes_sent does not count; the ring reached 96-98% of these links, netns_allreduce.sh),
#   CODECS ("none fp16 bf16 powersgd:2 topk:0.01 sign"), HOOKS ("none fp16 powersgd:2"; "" = no
#   PyTorch), COMPRESS_START (100), MTU (9000), DPTRAIN (build/dptrain), PYTHON
#   (/usr/bin/python3: Debian's python3-torch 1.13, scripts/install-deps.sh --bench; or a venv's),
#   DPT_EXTRA (more dptrain train flags), RUN_TIMEOUT (seconds per run, 1800), GRACE (60:
#   seconds the other PyTorch ranks get to exit once rank 0 has written its result), OUT
#   (build/bench/netns_compress.jsonl, appended; keep a run by copying it to benchmarks/results/),
#   MODEL (fmnist-cnn: the only model with a PyTorch twin), and dpt-netns's own:
#   DPT_NETNS_PREFIX (default here "dptc"), DPT_NETNS_SUBNET (78), BURST, PEAKRATE, EAGER,
#   TCP_LINKS, TSQ_BYTES.
# Horovod: HOROVOD=auto (default) adds the contenders horovod:C for C in HVD_COMPRESSIONS
#   ("fp16"; "none fp16" for both) when HVD_PYTHON (benchmarks/.venv/bin/python if it exists,
#   else PYTHON) imports horovod.torch; HOROVOD=try first makes benchmarks/.venv (Debian's
#   python3 with its system packages, so Horovod builds against python3-torch) and runs
#   `pip install horovod` there (built against Open MPI, no TensorFlow/MXNet/Gloo; at most
#   HVD_BUILD_TIMEOUT seconds, default 1800), saying why if it fails; HOROVOD=0: none. Its
#   ranks run under `dpt-netns run` (mpirun inside host 0, Horovod's all-reduce over Open MPI's
#   TCP between the hosts), as dptrain's.
# PyTorch from PyPI instead of Debian's: PYTHON=/path/to/venv/bin/python (its torch must have
#   gloo). PyPI's Linux torch wheel depends on the nvidia-* CUDA wheels (several GB); the CPU-only
#   wheels live on PyTorch's own index, which these machines cannot reach, so this script does
#   not make that venv itself.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${1:-2}
RATES=${RATES:-200mbit 1gbit}
HOSTS=${HOSTS:-4}
MODEL=${MODEL:-fmnist-cnn}
BATCH=${BATCH:-4}
LR=${LR:-0.02}
TARGET=${TARGET:-0.85}
EVAL_EVERY=${EVAL_EVERY:-100}
MAX_STEPS=${MAX_STEPS:-4000}
WINDOW=${WINDOW:-20}
CODECS=${CODECS-none fp16 bf16 powersgd:2 topk:0.01 sign}
HOOKS=${HOOKS-none fp16 powersgd:2}
COMPRESS_START=${COMPRESS_START:-100}
ALLREDUCE=${ALLREDUCE:-ring}
MTU=${MTU:-9000}
DPT=${DPTRAIN:-build/dptrain}
PY=${PYTHON:-/usr/bin/python3}
OUT=${OUT:-build/bench/netns_compress.jsonl}
RUN_TIMEOUT=${RUN_TIMEOUT:-1800}
GRACE=${GRACE:-60}
HOROVOD=${HOROVOD:-auto}
HVD_COMPRESSIONS=${HVD_COMPRESSIONS:-fp16}
VENV=$ROOT/benchmarks/.venv
HVD_PY=${HVD_PYTHON:-}
NETNS=$ROOT/launch/netns/dpt-netns
SUM=("$PY" "$ROOT/benchmarks/summarize_netns_compress.py")
export DPT_NETNS_PREFIX=${DPT_NETNS_PREFIX:-dptc}
P=$DPT_NETNS_PREFIX
S=${DPT_NETNS_SUBNET:-78}
[[ $MODEL == fmnist-cnn ]] || { echo "netns_compress: MODEL must be fmnist-cnn (the PyTorch twin's)" >&2; exit 1; }
[[ $DPT == /* ]] || DPT=$ROOT/$DPT
[[ -x $DPT ]] || { echo "netns_compress: $DPT not built (make build, or set DPTRAIN)" >&2; exit 1; }
"$NETNS" probe > /dev/null
if [[ -n $HOOKS ]] && ! "$PY" -c 'import torch.distributed as d; assert d.is_available() and d.is_gloo_available()' 2> /dev/null; then
  echo "netns_compress: $PY has no torch with gloo (scripts/install-deps.sh --bench, or HOOKS=\"\")" >&2
  exit 1
fi
mkdir -p "$(dirname "$OUT")"
TMP=$(mktemp -d)
cleanup() { "$NETNS" down 2> /dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
SESSION=$(date -u +%Y%m%dT%H%M%SZ)
TORCH_V=$([[ -n $HOOKS ]] && "$PY" -c 'import torch; print(torch.__version__)' || echo none)
echo "# session $SESSION: $HOSTS hosts, rates $RATES, mtu $MTU, batch $BATCH/rank, lr $LR," \
  "target $TARGET every $EVAL_EVERY steps (max $MAX_STEPS), dptrain --allreduce $ALLREDUCE," \
  "$ROUNDS rounds;" \
  "$(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cpus; torch $TORCH_V; $(mpirun --version | head -1)"
# Horovod: build it once if asked (HOROVOD=try), then use it where it imports.
# The C++ headers come from libtorch-dev and pybind11-dev (scripts/install-deps.sh --bench): without them the
# build stops at "torch/extension.h: No such file or directory".
if [[ $HOROVOD == try ]] && ! { [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c 'import horovod.torch' 2> /dev/null; }; then
  echo "# horovod: making $VENV and building horovod (pip install, up to ${HVD_BUILD_TIMEOUT:-1800} s)"
  hlog=$ROOT/build/bench/horovod-build.log
  mkdir -p "$(dirname "$hlog")"
  if ! { { [[ -x $VENV/bin/python ]] || /usr/bin/python3 -m venv --system-site-packages "$VENV"; } \
         && "$VENV/bin/pip" install -q wheel setuptools \
         && HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1 \
            HOROVOD_WITHOUT_MXNET=1 HOROVOD_WITHOUT_GLOO=1 MAKEFLAGS=-j"$(nproc)" \
            timeout "${HVD_BUILD_TIMEOUT:-1800}" "$VENV/bin/pip" install --no-cache-dir \
            --no-build-isolation horovod; } > "$hlog" 2>&1; then
    echo "# horovod: the build failed (log $hlog): $(grep -m1 -E 'error|Error' "$hlog" | cut -c1-200)"
  fi
fi
[[ -z $HVD_PY && -x $VENV/bin/python ]] && HVD_PY=$VENV/bin/python
HVD_PY=${HVD_PY:-$PY}
HVD_OK=0
if [[ $HOROVOD != 0 ]]; then
  if "$HVD_PY" -c 'import horovod.torch' 2> /dev/null; then
    HVD_OK=1
    echo "# horovod $("$HVD_PY" -c 'import horovod; print(horovod.__version__)') in $HVD_PY: contenders horovod:{${HVD_COMPRESSIONS// /,}}"
  else
    echo "# horovod: not importable in $HVD_PY (HOROVOD=try builds it in $VENV): no Horovod contender"
  fi
fi

# shellcheck source=netns_lib.sh
source benchmarks/netns_lib.sh   # rate_Bps
load1() { cut -d' ' -f1 /proc/loadavg; }
# Bytes sent so far by every host's mpi0, summed.
tx_all() {
  local t=0 i
  for ((i = 0; i < HOSTS; i++)); do
    t=$((t + $(ip netns exec "${P}h$i" cat /sys/class/net/mpi0/statistics/tx_bytes)))
  done
  echo "$t"
}
hosts_up() {   # RATE
  "$NETNS" down > /dev/null 2>&1 || true
  "$NETNS" up "$HOSTS" --mtu "$MTU" > /dev/null
  "$NETNS" shape tbf "$1" > /dev/null
}
compress_start() {   # CODEC: powersgd and topk start after COMPRESS_START fp32 steps
  case $1 in powersgd*|topk*) echo "$COMPRESS_START" ;; *) echo 0 ;; esac
}
read -r -a dpt_extra <<< "${DPT_EXTRA:-}"

# run_dptrain ROUND RATE CODEC
run_dptrain() {
  local r=$1 rate=$2 codec=$3 m=$TMP/m.jsonl log=$TMP/dpt.log ld tx0 tx1 rc=0 cs
  ld=$(load1)
  cs=$(compress_start "$codec")
  rm -f "$m"
  hosts_up "$rate"
  tx0=$(tx_all)
  TIMEOUT=$RUN_TIMEOUT "$NETNS" run "$HOSTS" -- "$DPT" train --model "$ROOT/models/$MODEL.cfg" \
    --data fashion-mnist --threads 1 --batch "$BATCH" --lr "$LR" --schedule constant \
    --warmup-epochs 0 --no-flip --no-eval --eval-every "$EVAL_EVERY" --stop-at-acc "$TARGET" \
    --max-steps "$MAX_STEPS" --epochs 1000 --compress "$codec" --compress-start "$cs" \
    --allreduce "$ALLREDUCE" \
    --log-every "$WINDOW" --no-progress --metrics "$m" "${dpt_extra[@]}" > "$log" 2>&1 || rc=$?
  tx1=$(tx_all)
  "$NETNS" down > /dev/null
  "${SUM[@]}" record-dptrain --metrics "$m" --stdout "$log" --rc "$rc" --window "$WINDOW" \
    --skip "$cs" --target "$TARGET" --hosts "$HOSTS" --batch "$BATCH" --wire-bytes $((tx1 - tx0)) \
    --tag "$(tag "$r" "$rate" "dptrain:$codec" "$ld")" >> "$OUT"
}

# torch_wait PID...: wait for the ranks (PID 1 is rank 0); the first failure ends the others.
# Once rank 0 has exited 0 (its result is written), the others get GRACE seconds to leave, then
# are killed: at 1gbit one rank of powerSGD_hook once hung in gloo's final barrier for 10 min.
torch_wait() {
  local pid st rc=0 left=$# deadline p
  while ((left > 0)); do
    st=0
    wait -n -p pid || st=$?
    ((left--)) || true
    if ((st != 0)); then
      ((rc == 0)) && rc=$st
      kill "$@" 2> /dev/null || true
    elif [[ $pid == "$1" ]]; then
      deadline=$((SECONDS + GRACE))
      for p in "$@"; do
        while kill -0 "$p" 2> /dev/null && ((SECONDS < deadline)); do sleep 1; done
        if kill -0 "$p" 2> /dev/null; then
          echo "# pid $p still running ${GRACE} s after rank 0 finished: killed" >&2
          kill "$p" 2> /dev/null || true
        fi
      done
      wait || true
      break
    fi
  done
  return "$rc"
}

# run_torch ROUND RATE HOOK
run_torch() {
  local r=$1 rate=$2 hook=$3 ld tx0 tx1 rc=0 i pids=()
  ld=$(load1)
  hosts_up "$rate"
  tx0=$(tx_all)
  for ((i = 0; i < HOSTS; i++)); do
    timeout "$RUN_TIMEOUT" ip netns exec "${P}h$i" env RANK=$i WORLD_SIZE="$HOSTS" \
      MASTER_ADDR="10.$S.0.1" MASTER_PORT=29500 GLOO_SOCKET_IFNAME=mpi0 OMP_NUM_THREADS=1 \
      "$PY" "$ROOT/benchmarks/torch_ddp_fmnist.py" --threads 1 --batch "$BATCH" --lr "$LR" \
      --decay weights --hook "$hook" --start-iter "$COMPRESS_START" --eval-every "$EVAL_EVERY" \
      --stop-at-acc "$TARGET" --max-steps "$MAX_STEPS" --window "$WINDOW" \
      --warmup-steps "$WINDOW" > "$TMP/torch.$i.log" 2>&1 &
    pids+=($!)
  done
  torch_wait "${pids[@]}" || rc=$?
  tx1=$(tx_all)
  "$NETNS" down > /dev/null
  "${SUM[@]}" record-torch --log "$TMP/torch.0.log" --logs "$TMP"/torch.*.log --rc "$rc" \
    --hosts "$HOSTS" --wire-bytes $((tx1 - tx0)) \
    --tag "$(tag "$r" "$rate" "pytorch:$hook" "$ld")" >> "$OUT"
}

# run_horovod ROUND RATE COMPRESSION: Horovod's DistributedOptimizer under mpirun in host 0
run_horovod() {
  local r=$1 rate=$2 comp=$3 ld tx0 tx1 rc=0 log=$TMP/hvd.log
  ld=$(load1)
  hosts_up "$rate"
  tx0=$(tx_all)
  TIMEOUT=$RUN_TIMEOUT "$NETNS" run "$HOSTS" -- \
    "$HVD_PY" "$ROOT/benchmarks/torch_ddp_fmnist.py" --mode horovod --iface mpi0 --threads 1 \
    --batch "$BATCH" --lr "$LR" --decay weights --hook "$comp" --eval-every "$EVAL_EVERY" \
    --stop-at-acc "$TARGET" --max-steps "$MAX_STEPS" --window "$WINDOW" \
    --warmup-steps "$WINDOW" > "$log" 2>&1 || rc=$?
  tx1=$(tx_all)
  "$NETNS" down > /dev/null
  "${SUM[@]}" record-torch --log "$log" --rc "$rc" --hosts "$HOSTS" --wire-bytes $((tx1 - tx0)) \
    --tag "$(tag "$r" "$rate" "horovod:$comp" "$ld")" >> "$OUT"
}

tag() {   # ROUND RATE CONTENDER LOAD: the fields every line of this session carries
  printf '{"session":"%s","round":%d,"rate":"%s","rate_Bps":%s,"hosts":%d,"mtu":%d,"contender":"%s","batch":%d,"global_batch":%d,"lr":%s,"target":%s,"eval_every":%d,"max_steps":%d,"compress_start":%d,"load1":%s,"netns":"burst=%s peakrate=%s eager=%s tsq=%s links=%s"}' \
    "$SESSION" "$1" "$2" "$(rate_Bps "$2")" "$HOSTS" "$MTU" "$3" "$BATCH" $((BATCH * HOSTS)) \
    "$LR" "$TARGET" "$EVAL_EVERY" "$MAX_STEPS" "$COMPRESS_START" "$4" "${BURST:-auto}" \
    "${PEAKRATE:-auto}" "${EAGER:-1048576}" "${TSQ_BYTES:-262144}" "${TCP_LINKS:-2}"
}

contenders=()
for c in $CODECS; do contenders+=("dptrain:$c"); done
for h in $HOOKS; do contenders+=("pytorch:$h"); done
if ((HVD_OK)); then for h in $HVD_COMPRESSIONS; do contenders+=("horovod:$h"); done; fi
n=${#contenders[@]}
((n > 0)) || { echo "netns_compress: no contenders (CODECS and HOOKS empty)" >&2; exit 1; }
start=$SECONDS
for r in $(seq "$ROUNDS"); do
  for rate in $RATES; do
    for k in $(seq 0 $((n - 1))); do
      c=${contenders[$(((k + r - 1) % n))]}
      t0=$SECONDS
      case $c in
        dptrain:*) run_dptrain "$r" "$rate" "${c#dptrain:}" ;;
        pytorch:*) run_torch "$r" "$rate" "${c#pytorch:}" ;;
        horovod:*) run_horovod "$r" "$rate" "${c#horovod:}" ;;
      esac
      echo "# round $r $rate $c: $("${SUM[@]}" brief "$OUT"), $((SECONDS - t0)) s" >&2
    done
  done
done
echo "# $((SECONDS - start)) s; results appended to $OUT"
"${SUM[@]}" summary --session "$SESSION" "$OUT"
