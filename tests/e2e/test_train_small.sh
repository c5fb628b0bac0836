#!/usr/bin/env bash
# A short training run on learnable synthetic data: loss falls, accuracy is far above chance,
# metrics JSON lines carry the documented fields, the run is reproducible bit for bit from the
# seed (same param_crc twice), eval of the saved weights reproduces the final test accuracy.
source "$(dirname "$0")/lib.sh"
args=(--model "$SRC/models/fmnist-cnn.cfg" --data synthetic:2048:1:28:28:10 --batch 64 --epochs 2
      --lr 0.05 --threads 2 --no-progress --log-every 5)
"$DPT" train "${args[@]}" --metrics "$TMP/m1.jsonl" --save "$TMP/w.dpt" > "$TMP/out1.txt" || bad "train exited $?"
"$DPT" train "${args[@]}" --metrics "$TMP/m2.jsonl" > /dev/null || bad "second train exited $?"
grep -q '^final test accuracy' "$TMP/out1.txt" && ok || bad "no final accuracy line"
final=$(grep '"kind":"final"' "$TMP/m1.jsonl")
for f in test_acc wall_s img_s ranks threads param_crc; do
  [[ "$final" == *"\"$f\":"* ]] && ok || bad "final record lacks $f: $final"
done
epoch=$(grep '"kind":"epoch"' "$TMP/m1.jsonl" | tail -1)
for f in epoch train_loss train_acc test_loss test_acc img_s wall_s param_crc; do
  [[ "$epoch" == *"\"$f\":"* ]] && ok || bad "epoch record lacks $f"
done
step=$(grep '"kind":"step"' "$TMP/m1.jsonl" | head -1)
for f in epoch step loss lr img_s t_compute_s t_comm_exposed_s bytes_sent; do
  [[ "$step" == *"\"$f\":"* ]] && ok || bad "step record lacks $f"
done
acc=$(sed 's/.*"test_acc":\([0-9.]*\).*/\1/' <<< "$final")
awk -v a="$acc" 'BEGIN { exit !(a > 0.5) }' && ok || bad "synthetic test accuracy $acc not above 0.5"
crc1=$(grep -o '"param_crc":"[0-9a-f]*"' <<< "$final")
crc2=$(grep '"kind":"final"' "$TMP/m2.jsonl" | grep -o '"param_crc":"[0-9a-f]*"')
[[ "$crc1" == "$crc2" ]] && ok || bad "same seed gave different parameters: $crc1 vs $crc2"
first=$(grep '"kind":"step"' "$TMP/m1.jsonl" | head -1 | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
last=$(grep '"kind":"step"' "$TMP/m1.jsonl" | tail -1 | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' && ok || bad "loss did not fall: $first -> $last"
ev=$("$DPT" eval --model "$SRC/models/fmnist-cnn.cfg" --data synthetic:2048:1:28:28:10 --batch 64 --weights "$TMP/w.dpt")
pct=$(awk -v a="$acc" 'BEGIN { printf "%.2f%%", 100 * a }')
[[ "$ev" == *"$pct"* ]] && ok || bad "eval gave '$ev', training ended at $pct"
# PNG curves from the metrics (gnuplot is a benchmark dependency: checked only where installed)
if command -v gnuplot > /dev/null; then
  bash "$SRC/benchmarks/plot" "$TMP/m1.jsonl" "$TMP/png" > /dev/null || bad "plot exited $?"
  for f in loss accuracy throughput; do
    [[ "$(head -c 4 "$TMP/png/$f.png" | tail -c 3)" == "PNG" ]] && ok || bad "$f.png is not a PNG"
  done
  # a run with fewer steps than --log-every (no step records) plots from its epoch records
  "$DPT" train "${args[@]}" --epochs 1 --log-every 1000 --metrics "$TMP/m3.jsonl" > /dev/null || bad "short train exited $?"
  ! grep -q '"kind":"step"' "$TMP/m3.jsonl" && bash "$SRC/benchmarks/plot" "$TMP/m3.jsonl" "$TMP/png3" > /dev/null \
    && [[ -s $TMP/png3/loss.png && -s $TMP/png3/throughput.png ]] && ok || bad "plot of a run without step records failed"
else
  echo "note: gnuplot not installed, plot check skipped"
fi
finish
