#!/usr/bin/env bash
# `dptrain bench allreduce --compress CODEC` under mpirun at np 2 and 3: every row has the
# DESIGN.md fields plus compress, bytes_sent, t_code_us and rel_err; every rank ends with rank
# 0's bits (wrong = 0); rel_err (first call) is below 1e-2 for fp16 and bf16, with or without
# +zstd, and float32 rounding for none+zstd; +zstd sends fewer bytes than the same codec without
# it; --compress none is the plain benchmark; bad combinations are usage errors.
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
run() { mpirun --oversubscribe -np "$@" 2> "$TMP/err"; }
field() { grep -o "\"$1\":[^,}]*" | cut -d: -f2; }   # field NAME < lines: its values
flags=(--json --min-bytes 4K --max-bytes 64K --factor 16 --reps 1 --iters 2)
for np in 2 3; do
  for codec in fp16 bf16 fp16+zstd bf16+zstd topk:0.1+zstd none+zstd; do
    out="$TMP/$np-${codec//[:+]/_}.jsonl"
    run "$np" "$DPT" bench allreduce --compress "$codec" "${flags[@]}" > "$out" \
      && ok || bad "np $np $codec exited $?: $(cat "$TMP/err")"
    rows=$(grep -c '"compress"' "$out" || true)
    [[ $rows -eq 2 ]] && ok || bad "np $np $codec: $rows rows, want 2 (4 KiB, 64 KiB): $(cat "$out")"
    for f in algo np bytes time_us algbw_GBs busbw_GBs predicted_us wrong compress bytes_sent \
             t_code_us rel_err; do
      [[ $(grep '"compress"' "$out" | grep -c "\"$f\":") -eq 2 ]] && ok \
        || bad "np $np $codec: rows without $f"
    done
    grep -q "\"compress\":\"$codec\"" "$out" && ok || bad "np $np: compress is not $codec"
    [[ $(grep '"compress"' "$out" | field wrong | sort -u) == 0 ]] && ok \
      || bad "np $np $codec: ranks disagree: $(cat "$out")"
    case $codec in
      none*) limit=1e-6 ;;
      topk*) limit=2 ;;   # error feedback: the first call sends 10% of the entries
      *) limit=1e-2 ;;
    esac
    grep '"compress"' "$out" | field rel_err \
      | awk -v l=$limit '{ if (!($1 >= 0 && $1 < l)) bad = 1 } END { exit bad }' && ok \
      || bad "np $np $codec: rel_err not in [0, $limit): $(grep '"compress"' "$out" | field rel_err)"
  done
  for codec in fp16 bf16; do   # 64 KiB rows: zstd saves something on gradient-like 16-bit data
    plain=$(tail -1 "$TMP/$np-$codec.jsonl" | field bytes_sent)
    z=$(tail -1 "$TMP/$np-${codec}_zstd.jsonl" | field bytes_sent)
    awk -v a="$z" -v b="$plain" 'BEGIN { exit !(a < b) }' && ok \
      || bad "np $np: $codec+zstd sent $z bytes, $codec $plain"
  done
done
# --compress none: the plain benchmark, as before
run 2 "$DPT" bench allreduce --compress none --json --max-bytes 4K --factor 32 --reps 1 \
  --algos ring > "$TMP/none.jsonl" && ok || bad "--compress none exited $?: $(cat "$TMP/err")"
grep -q '"algo":"ring"' "$TMP/none.jsonl" && ! grep -q '"compress"' "$TMP/none.jsonl" && ok \
  || bad "--compress none is not the plain benchmark: $(cat "$TMP/none.jsonl")"
# the table for people
run 2 "$DPT" bench allreduce --compress bf16+zstd --max-bytes 4K --factor 32 --reps 1 \
  > "$TMP/t.txt" && grep -q "rel_err" "$TMP/t.txt" && ok || bad "table: $(cat "$TMP/t.txt" "$TMP/err")"
expect_fail 2 "--compress fp16: the codecs take f32 gradients (--dtype bf16)" -- \
  "$DPT" bench allreduce --compress fp16 --dtype bf16
expect_fail 2 "--compress fp16: the codecs average (--op sum)" -- \
  "$DPT" bench allreduce --compress fp16 --op sum
expect_fail 2 "no 0copy variants" -- "$DPT" bench allreduce --compress fp16 --algos shm0copy
expect_fail 2 "unknown codec 'fp17'" -- "$DPT" bench allreduce --compress fp17+zstd
finish
