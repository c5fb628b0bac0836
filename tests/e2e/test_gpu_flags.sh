#!/usr/bin/env bash
# The GPU flags on any build: --precision/--loss-scale/--allreduce nccl refused on host backends
# naming the flag; --device cuda without a device (or without CUDA in the build) refused naming
# --device cuda and the rank; bad values are usage errors (exit 2); `dptrain info` has a CUDA line.
source "$(dirname "$0")/lib.sh"
d=(--data synthetic:256:1:28:28:10 --max-steps 1 --quiet)
expect_fail 1 "--precision bf16: needs --device cuda" -- "$DPT" train --precision bf16 "${d[@]}"
expect_fail 1 "--precision fp16: needs --device cuda" -- "$DPT" train --device cpu --precision fp16 "${d[@]}"
expect_fail 1 "--loss-scale: needs --device cuda" -- "$DPT" train --loss-scale dynamic "${d[@]}"
expect_fail 1 "--allreduce nccl: needs --device cuda" -- "$DPT" train --allreduce nccl "${d[@]}"
expect_fail 2 "--precision: 'fp8'" -- "$DPT" train --precision fp8 "${d[@]}"
expect_fail 2 "--loss-scale: '0.5'" -- "$DPT" train --loss-scale 0.5 "${d[@]}"
expect_fail 1 "--precision bf16: needs --device cuda" -- "$DPT" bench train --precision bf16 --steps 1
info=$("$DPT" info)
cuda=$(grep 'CUDA:' <<< "$info")
[[ -n "$cuda" ]] && ok || bad "dptrain info has no CUDA line: $info"
if [[ "$cuda" != *'compiled, '[1-9]* ]]; then   # no usable device here
  expect_fail 1 "--device cuda" -- "$DPT" train --device cuda "${d[@]}"
  if [[ "$cuda" == *compiled* ]]; then
    expect_fail 1 "rank 0 has no CUDA device" -- "$DPT" train --device cuda "${d[@]}"
    expect_fail 1 "rank 0 has no CUDA device" -- "$DPT" eval --device cuda --weights /nonexistent --data synthetic:64:1:28:28:10
  fi
fi
finish
