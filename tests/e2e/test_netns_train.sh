#!/usr/bin/env bash
# 2-rank training across 2 "hosts" (network namespaces over a bridge, real TCP between them):
# `launch/netns/dpt-netns exec 2 -- dptrain train ...` runs mpirun inside host 0 with one rank per
# host. mpirun must exit 0 (every rank did), the final accuracy line must be printed, the
# metrics file must end with a "final" record for 2 ranks, and every namespace must be gone.
# Skipped (exit 77) with the reason where namespaces cannot be made (not root, no iproute2).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

NETNS=$SRC/launch/netns/dpt-netns
export DPT_NETNS_PREFIX=dptt$$ DPT_NETNS_SUBNET=80 TIMEOUT=240
if ! why=$("$NETNS" probe 2>&1); then
  echo "SKIP: $why"
  exit 77
fi
[[ -x $DPT ]] || { echo "FAIL: $DPT is not an executable"; exit 1; }
gone() { ip netns list | awk '{print $1}' | grep -c "^$DPT_NETNS_PREFIX" || true; }
# dpt-netns tears its namespaces down itself; this is for a test killed half-way
trap '[[ $(gone) -eq 0 ]] || "$NETNS" down > /dev/null 2>&1 || true; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM HUP

t0=$SECONDS
rc=0
out=$("$NETNS" exec 2 -- "$DPT" train --model "$SRC/models/fmnist-cnn.cfg" \
  --data synthetic:256:1:28:28:10 --epochs 1 --batch 32 --lr 0.05 --seed 3 --threads 1 \
  --no-progress --metrics "$TMP/metrics.jsonl" 2>&1) || rc=$?
echo "dpt-netns exec 2: exit $rc after $((SECONDS - t0)) s"
[[ $rc -eq 0 ]] && ok || bad "dpt-netns exec (mpirun across 2 hosts) exited $rc: $out"
[[ $out == *"dpt-netns: 2 hosts up"* ]] && ok || bad "hosts were not set up: $out"

finals=$(grep -E '^final test accuracy: [0-9]+\.[0-9]{2}% \([0-9]+/256\)' <<< "$out" || true)
nfinal=$(grep -c . <<< "$finals" || true)
((nfinal == 1)) && ok || bad "want exactly one final accuracy line (rank 0), got $nfinal: $out"

final=$(grep '"kind":"final"' "$TMP/metrics.jsonl" 2> /dev/null | tail -n 1 || true)
[[ -n $final ]] && ok || bad "no final record in the metrics file: $(cat "$TMP/metrics.jsonl" 2> /dev/null)"
[[ $final == *'"ranks":2,'* ]] && ok || bad "final record: want \"ranks\":2: $final"
acc=$(sed -n 's/.*"test_acc":\([0-9.]*\).*/\1/p' <<< "$final")
pct=$(awk -v a="${acc:-x}" 'BEGIN { printf "%.2f%%", 100 * a }')
[[ -n $acc && $finals == *"accuracy: $pct ("* ]] && ok || bad "final line(s) '$finals' do not show test_acc $acc"

left=$(gone)
[[ $left -eq 0 ]] && ok || bad "$left namespaces left behind"
finish
