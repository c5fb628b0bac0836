#!/usr/bin/env bash
# All-reduce across network-namespace "hosts" (issue 3, across hosts): for every link rate and MTU,
# launch/netns/dpt-netns makes HOSTS hosts joined by a bridge, shapes every host's egress to the
# rate (tbf), runs `dptrain bench allreduce --json` with one rank per host through mpirun over TCP,
# and tears everything down again. Rounds are interleaved (round 1 of every configuration, then
# round 2, ...) so that the shared machine's drift hits every configuration alike.
#
# Per configuration three runs: small sizes (4 B .. 1 MiB by x2, for the latency end and the
# rd/ring crossover; about 30 ms timed blocks, median of 5), 4 and 16 MiB, and 64 MiB .. MAX by x4
# (one call per timed block, median of 3; tree left out of the last: its lockstep double binary
# tree takes 3-4x the ring's time on these links, minutes per round at 200 Mbit/s). Every line is
# appended to OUT, tagged with session, run, rate,
# rate_Bps (payload bytes per second of the nominal rate), mtu, hosts, segment, the dpt-netns
# settings (netns) and the 1-minute load average at the start of the run; then
# benchmarks/summarize_netns.py prints the summary
# (medians over rounds, busbw as % of the link, the alpha-beta fit, measured vs predicted).
#
# Usage: benchmarks/netns_allreduce.sh [rounds=2] [max_bytes=64M]   (as root, after `make build`)
#   The defaults take about 23 minutes (two rounds of 200mbit and 1gbit at MTU 9000 and 1500).
# Environment: RATES (default "200mbit 1gbit"), MTUS (default "9000 1500"), HOSTS (default 4),
#   ALGOS (default ring,rhd,rd,tree,mpi,auto), BIG_ALGOS (above 16 MiB, default
#   ring,rhd,rd,mpi,auto), DPTRAIN (default build/dptrain), SEGMENT (dptrain
#   --segment-bytes, default 256K), OUT (default build/bench/netns.jsonl; keep a run by copying it to benchmarks/results/), and
#   dpt-netns's own: DPT_NETNS_PREFIX (default here "dptb"), DPT_NETNS_SUBNET, BURST, PEAKRATE,
#   EAGER, TCP_LINKS.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
MAX=${2:-64M}
RATES=${RATES:-200mbit 1gbit}
MTUS=${MTUS:-9000 1500}
HOSTS=${HOSTS:-4}
ALGOS=${ALGOS:-ring,rhd,rd,tree,mpi,auto}
BIG_ALGOS=${BIG_ALGOS:-ring,rhd,rd,mpi,auto}
DPT=${DPTRAIN:-build/dptrain}
SEGMENT=${SEGMENT:-256K}
OUT=${OUT:-build/bench/netns.jsonl}
mkdir -p "$(dirname "$OUT")"
NETNS=launch/netns/dpt-netns
export DPT_NETNS_PREFIX=${DPT_NETNS_PREFIX:-dptb}
[[ -x $DPT ]] || { echo "netns_allreduce: $DPT not built (make build, or set DPTRAIN)" >&2; exit 1; }
"$NETNS" probe > /dev/null
SESSION=$(date -u +%Y%m%dT%H%M%SZ)
echo "# session $SESSION: $HOSTS hosts, rates $RATES, MTUs $MTUS, $ROUNDS rounds, up to $MAX;" \
  "$(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cpus; $(mpirun --version | head -1)"

# shellcheck source=netns_lib.sh
source benchmarks/netns_lib.sh   # rate_Bps

# run ROUND RATE MTU ALGOS ARGS...: one bench run across the hosts, tagged lines appended to OUT.
run() {
  local round=$1 rate=$2 mtu=$3 algos=$4 tmp load tag t0=$SECONDS
  shift 4
  tmp=$(mktemp)
  load=$(cut -d' ' -f1 /proc/loadavg)
  tag="\"session\":\"$SESSION\",\"run\":$round,\"rate\":\"$rate\",\"rate_Bps\":$(rate_Bps "$rate"),"
  tag+="\"mtu\":$mtu,\"hosts\":$HOSTS,\"segment\":\"$SEGMENT\",\"load1\":$load,"
  tag+="\"netns\":\"burst=${BURST:-auto} peakrate=${PEAKRATE:-auto} eager=${EAGER:-1048576}"
  tag+=" tsq=${TSQ_BYTES:-262144} links=${TCP_LINKS:-2}\","
  if "$NETNS" exec "$HOSTS" --rate "$rate" --mtu "$mtu" -- "$DPT" bench allreduce --json \
      --algos "$algos" --segment-bytes "$SEGMENT" "$@" > "$tmp" 2> "$tmp.err"; then
    grep '^{' "$tmp" | sed "s/^{/{$tag/" >> "$OUT"
    echo "# round $round $rate mtu $mtu $algos ($*): $(grep -c '"time_us"' "$tmp") rows," \
      "load $load, $((SECONDS - t0)) s"
  else
    echo "netns_allreduce: round $round $rate mtu $mtu ($*) failed:" >&2
    tail -20 "$tmp" "$tmp.err" >&2
    failed=1
  fi
  rm -f "$tmp" "$tmp.err"
}

failed=0
start=$SECONDS
for r in $(seq "$ROUNDS"); do
  for rate in $RATES; do
    for mtu in $MTUS; do
      run "$r" "$rate" "$mtu" "$ALGOS" --min-bytes 4 --max-bytes 1M --factor 2 --reps 5
      run "$r" "$rate" "$mtu" "$ALGOS" --min-bytes 4M --max-bytes 16M --factor 4 --reps 3 --iters 1
      if [[ $(numfmt --from=iec "$MAX") -ge $((64 << 20)) ]]; then
        run "$r" "$rate" "$mtu" "$BIG_ALGOS" --min-bytes 64M --max-bytes "$MAX" --factor 4 \
          --reps 3 --iters 1
      fi
    done
  done
done
echo "# $((SECONDS - start)) s; results appended to $OUT"
python3 benchmarks/summarize_netns.py --session "$SESSION" "$OUT"
exit "$failed"
