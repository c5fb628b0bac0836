#!/usr/bin/env bash
# tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET...]: run each libFuzzer target for SECONDS on a copy
# of its seed corpus (tests/fuzz/corpus/<target>), one after the other; print executions and
# coverage per target; exit non-zero if any target crashed (its reproducer stays in the work dir,
# printed). Targets: idx cifar shard model ckpt config (default: all).
set -uo pipefail
build=$1 secs=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
((${#targets[@]})) || targets=(idx cifar shard model ckpt config)
work=$(mktemp -d /tmp/dpt-fuzz-run-XXXXXX)
rc=0
for t in "${targets[@]}"; do
  bin=$build/tests/fuzz/fuzz_$t
  [[ -x $bin ]] || { echo "fuzz_$t: not built in $build (configure with CC=clang -DDPT_FUZZ=ON)"; rc=1; continue; }
  mkdir -p "$work/$t/corpus" "$work/$t/art"
  cp "$here/corpus/$t/"* "$work/$t/corpus/" 2> /dev/null || true
  # main.c keeps --config values for the life of the process (by design): no leak checking there
  ASAN_OPTIONS=detect_leaks=$([[ $t == config ]] && echo 0 || echo 1) \
    "$bin" -max_total_time="$secs" -artifact_prefix="$work/$t/art/" -print_final_stats=1 \
    "$work/$t/corpus" > "$work/$t/log" 2>&1
  r=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t/log" | grep -o '[0-9]*$')
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$work/$t/log" | tail -1)
  echo "fuzz_$t: ${secs}s, ${execs:-?} executions, $cov, corpus $(ls "$work/$t/corpus" | wc -l) inputs, exit $r"
  if ((r)); then
    rc=1
    grep -m3 -E 'ERROR|SUMMARY' "$work/$t/log"
    echo "  reproducer(s): $(ls "$work/$t/art")  (in $work/$t/art; log $work/$t/log)"
  fi
done
((rc)) || rm -rf "$work"
exit $rc
