#!/usr/bin/env bash
# Bad input gets one clear error naming the flag or file and a non-zero exit, never a crash:
# nonsense flags, missing/truncated/corrupt IDX files, bad model files, bad weight files.
source "$(dirname "$0")/lib.sh"

# --- flags (usage errors exit 2) ---
expect_fail 2 "--epochs: 'abc' is not an integer" -- "$DPT" train --epochs abc
expect_fail 2 "--epochs: 0 is out of range" -- "$DPT" train --epochs 0
expect_fail 2 "--lr: -1 is out of range" -- "$DPT" train --lr -1
expect_fail 2 "--lr: 'nan' is not a number" -- "$DPT" train --lr nan
expect_fail 2 "unknown flag '--bogus'" -- "$DPT" train --bogus 3
expect_fail 2 "--batch needs a value" -- "$DPT" train --batch
expect_fail 2 "--schedule: unknown schedule 'zigzag'" -- "$DPT" train --schedule zigzag
expect_fail 2 "--layout: 'diagonal' is not one of nchw|blocked" -- "$DPT" train --layout diagonal
expect_fail 2 "unexpected argument 'extra'" -- "$DPT" train extra
expect_fail 2 "--seed: '-4' is not a non-negative integer" -- "$DPT" train --seed -4
expect_fail 2 "--nesterov: 'maybe' is not a boolean" -- "$DPT" train --nesterov=maybe
expect_fail 2 "flag '--weights' does not apply here" -- "$DPT" train --weights x
expect_fail 2 "--weights FILE is required" -- "$DPT" eval
expect_fail 2 "unknown command 'frobnicate'" -- "$DPT" frobnicate
expect_fail 2 "--optimizer: 'adam' is not one of sgd|lars|adamw" -- "$DPT" train --optimizer adam
expect_fail 2 "--momentum: not used by --optimizer adamw" -- "$DPT" train --optimizer adamw --momentum 0.8
printf 'optimizer = adamw\nnesterov = 0\n' > "$TMP/adamw.conf"
expect_fail 2 "--nesterov: not used by --optimizer adamw" -- "$DPT" train --config "$TMP/adamw.conf"
expect_fail 1 "--backend: unknown backend 'tpu'" -- "$DPT" train --backend tpu --data synthetic:64:1:28:28:10
printf 'epochs = 2\nfrob = 1\n' > "$TMP/bad.conf"
expect_fail 2 "bad.conf:2: unknown flag 'frob'" -- "$DPT" train --config "$TMP/bad.conf"
expect_fail 1 "--config: $TMP/none.conf" -- "$DPT" train --config "$TMP/none.conf"

# --- help documents every flag ---
help=$("$DPT" train --help)
for f in model data backend threads layout epochs batch lr warmup-epochs schedule momentum nesterov \
         weight-decay label-smoothing seed crop-pad flip metrics save progress config; do
  [[ "$help" == *"--$f"* ]] && ok || bad "train --help does not document --$f"
done

# --- datasets ---
expect_fail 1 "$TMP/none/train-images-idx3-ubyte" -- "$DPT" train --data "fashion-mnist:$TMP/none"
make_idx "$TMP/good" train 64
make_idx "$TMP/good" t10k 16
# truncated image file
cp -r "$TMP/good" "$TMP/trunc"
head -c 3000 "$TMP/good/train-images-idx3-ubyte" > "$TMP/trunc/train-images-idx3-ubyte"
expect_fail 1 "$TMP/trunc/train-images-idx3-ubyte" -- "$DPT" train --data "fashion-mnist:$TMP/trunc"
# truncated label file
cp -r "$TMP/good" "$TMP/trunclab"
head -c 20 "$TMP/good/train-labels-idx1-ubyte" > "$TMP/trunclab/train-labels-idx1-ubyte"
expect_fail 1 "$TMP/trunclab/train-labels-idx1-ubyte" -- "$DPT" train --data "fashion-mnist:$TMP/trunclab"
# bad magic
cp -r "$TMP/good" "$TMP/magic"
{ printf '\x00\x00\x08\x04'; tail -c +5 "$TMP/good/train-images-idx3-ubyte"; } > "$TMP/magic/train-images-idx3-ubyte"
expect_fail 1 "$TMP/magic/train-images-idx3-ubyte" -- "$DPT" train --data "fashion-mnist:$TMP/magic"
# corrupt gzip: compress, then flip bytes in the middle of the stream
cp -r "$TMP/good" "$TMP/gz"
gzip "$TMP/gz/train-images-idx3-ubyte"
size=$(stat -c %s "$TMP/gz/train-images-idx3-ubyte.gz")
printf '\xff\x00\xff\x00\xff\x00\xff\x00' | dd of="$TMP/gz/train-images-idx3-ubyte.gz" bs=1 seek=$((size / 2)) conv=notrunc status=none
expect_fail 1 "$TMP/gz/train-images-idx3-ubyte.gz" -- "$DPT" train --data "fashion-mnist:$TMP/gz"
# label / image count mismatch
cp -r "$TMP/good" "$TMP/count"
make_idx "$TMP/count2" train 32
cp "$TMP/count2/train-labels-idx1-ubyte" "$TMP/count/train-labels-idx1-ubyte"
expect_fail 1 "train-labels-idx1-ubyte" -- "$DPT" train --data "fashion-mnist:$TMP/count"
expect_fail 1 "unknown" -- "$DPT" train --data "imagenet:/x"

# --- model files ---
printf '[net]\ninput=1,28,28\nclasses=10\n[conv]\nfilters=8\n[transformer]\n' > "$TMP/unknown.cfg"
expect_fail 1 "$TMP/unknown.cfg:6: unknown layer type 'transformer'" -- "$DPT" train --model "$TMP/unknown.cfg" --data "fashion-mnist:$TMP/good"
printf '[net]\ninput=1,28,28\nclasses=10\n[conv]\nfilters=8\nsize=31\npad=0\n[fc]\noutput=10\n' > "$TMP/shape.cfg"
expect_fail 1 "$TMP/shape.cfg:4: layer 'conv0'" -- "$DPT" train --model "$TMP/shape.cfg" --data "fashion-mnist:$TMP/good"
printf '[net]\ninput=3,32,32\nclasses=10\n[fc]\noutput=10\n' > "$TMP/rgb.cfg"
expect_fail 1 "expects 3x32x32 inputs" -- "$DPT" train --model "$TMP/rgb.cfg" --data "fashion-mnist:$TMP/good"
expect_fail 1 "$TMP/nomodel.cfg" -- "$DPT" train --model "$TMP/nomodel.cfg"
# a key given twice: the second value would win silently
printf '[net]\ninput=1,28,28\nclasses=10\nclasses=5\n[fc]\noutput=10\n' > "$TMP/dupnet.cfg"
expect_fail 1 "$TMP/dupnet.cfg:4: duplicate key 'classes' in [net] (first given on line 3)" -- "$DPT" train --model "$TMP/dupnet.cfg" --data "fashion-mnist:$TMP/good"
printf '[net]\ninput=1,28,28\nclasses=10\n[conv]\nfilters=8\nfilters = 16\n[fc]\noutput=10\n' > "$TMP/duplayer.cfg"
expect_fail 1 "$TMP/duplayer.cfg:6: duplicate key 'filters' in [conv] (layer 1)" -- "$DPT" train --model "$TMP/duplayer.cfg" --data "fashion-mnist:$TMP/good"

# --- weights files ---
"$DPT" train --model "$SRC/models/fmnist-cnn.cfg" --data "fashion-mnist:$TMP/good" --batch 16 \
  --epochs 1 --save "$TMP/w.dpt" --quiet > /dev/null 2>&1 && ok || bad "training on a tiny set failed"
"$DPT" eval --model "$SRC/models/fmnist-cnn.cfg" --data "fashion-mnist:$TMP/good" --batch 16 \
  --weights "$TMP/w.dpt" > /dev/null 2>&1 && ok || bad "eval of saved weights failed"
head -c 100 "$TMP/w.dpt" > "$TMP/wtrunc.dpt"
expect_fail 1 "$TMP/wtrunc.dpt: truncated" -- "$DPT" eval --model "$SRC/models/fmnist-cnn.cfg" --data "fashion-mnist:$TMP/good" --batch 16 --weights "$TMP/wtrunc.dpt"
cp "$TMP/w.dpt" "$TMP/wflip.dpt"
printf '\x55' | dd of="$TMP/wflip.dpt" bs=1 seek=1000 conv=notrunc status=none
expect_fail 1 "$TMP/wflip.dpt: payload checksum mismatch" -- "$DPT" eval --model "$SRC/models/fmnist-cnn.cfg" --data "fashion-mnist:$TMP/good" --batch 16 --weights "$TMP/wflip.dpt"
expect_fail 1 "different model" -- "$DPT" eval --model "$SRC/models/resnet9.cfg" --data "synthetic:64:3:32:32:10" --batch 16 --weights "$TMP/w.dpt"
expect_fail 1 "$TMP/nothing.dpt" -- "$DPT" eval --model "$SRC/models/fmnist-cnn.cfg" --data "fashion-mnist:$TMP/good" --weights "$TMP/nothing.dpt"

# dptrain info lists every value the parsers accept (they name their own lists in their errors)
info=$("$DPT" info)
known=$("$DPT" train --allreduce bogus 2>&1 | sed -n 's/.*known: \(.*\) (see.*/\1/p' | tr -d ',')
[[ -n $known ]] || bad "no list of all-reduce algorithms in the --allreduce error"
for a in $known; do grep -qE "^    $a +(yes|no) " <<< "$info" && ok || bad "dptrain info does not list --allreduce $a: $info"; done
for k in $("$DPT" train --schedule bogus 2>&1 | sed -n 's/.*(\(.*\)) (see.*/\1/p' | tr -d ','); do
  grep -A1 -- "--schedule" <<< "$info" | grep -qw "$k" && ok || bad "dptrain info does not list schedule $k"
done
grep -A1 -- "--optimizer" <<< "$info" | grep -q "sgd lars" && ok || bad "dptrain info: no --optimizer values: $info"
[[ $("$DPT" help train) == "$("$DPT" train --help)" ]] && ok || bad "'dptrain help train' is not the train help"
[[ $("$DPT" help bench allreduce) == "$("$DPT" bench allreduce --help)" ]] && ok || bad "'dptrain help bench allreduce' differs"

v=$("$DPT" --version)
[[ "$v" =~ ^dptrain\ [0-9]+\.[0-9]+\.[0-9]+\ \(git\ [0-9a-f]{7,}(-dirty)?\)$ || "$v" == *"(git unknown)" ]] && ok || bad "--version: '$v'"
[[ $("$DPT" version) == "$v" ]] && ok || bad "'dptrain version' differs from --version"
[[ "$info" == "$v"* ]] && ok || bad "dptrain info does not start with the version: ${info:0:80}"
expect_fail 2 "unknown flag '--epoch' (did you mean --epochs?)" -- "$DPT" train --epoch 3
expect_fail 2 "unknown flag '--no-evall' (did you mean --no-eval?)" -- "$DPT" train --no-evall
finish
