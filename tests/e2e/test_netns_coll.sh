#!/usr/bin/env bash
# The collective layer across 3 "hosts" (network namespaces over a bridge, real TCP between them,
# links shaped to 1 Gbit/s): tests/mpi's check_coll_mpi runs with one rank per host through
# launch/netns/dpt-netns, which must also tear every namespace down afterwards.
# Skipped (exit 77) with the reason where namespaces cannot be made (not root, no iproute2).
source "$(dirname "$0")/lib.sh"
NETNS=$SRC/launch/netns/dpt-netns
PROG=$(dirname "$DPT")/tests/check_coll_mpi
# TIMEOUT: dpt-netns's bound on the run, an event (the program's exit) waited for, not a speed
# assumption: 300 s ran out on the 2-core EPYC under ~4x oversubscription (CI beside 6 training
# ranks); 1200 s leaves room for that on a machine 3x slower
export DPT_NETNS_PREFIX=dpte$$ DPT_NETNS_SUBNET=79 TIMEOUT=1200
if ! why=$("$NETNS" probe 2>&1); then
  echo "SKIP: $why"
  exit 77
fi
[[ -x $PROG ]] || { echo "FAIL: $PROG not built"; exit 1; }
out=$("$NETNS" exec 3 --rate 1gbit -- "$PROG" 2>&1) && ok || bad "check_coll_mpi across 3 hosts failed: $out"
[[ "$out" == *"dpt-netns: 3 hosts up"* ]] && ok || bad "hosts were not set up: $out"
left=$(ip netns list | awk '{print $1}' | grep -c "^$DPT_NETNS_PREFIX" || true)
[[ $left -eq 0 ]] && ok || bad "$left namespaces left behind"
# nonsense arguments: one clear error, nothing created
expect_fail 1 "up: host count must be 1..64" -- "$NETNS" up 0
expect_fail 1 "exec: unknown option" -- "$NETNS" exec 2 "$PROG"
left=$(ip netns list | awk '{print $1}' | grep -c "^$DPT_NETNS_PREFIX" || true)
[[ $left -eq 0 ]] && ok || bad "$left namespaces left behind after bad arguments"
finish
