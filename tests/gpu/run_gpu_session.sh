#!/usr/bin/env bash
# One prepared run for a GPU machine (device tool): build with CUDA for sm_90, run the GPU tests
# (ctest -L gpu: the ops against ref, the trainer's device code, the end-to-end training script)
# and the dptrain vs PyTorch benchmark; logs and JSON lines go to $OUT (or ./gpu-out).
# Usage: tests/gpu/run_gpu_session.sh [all|build|test|quick|bench] [bench rounds=3] [steps=30]
#   quick: the GPU tests without the 8-epoch Fashion-MNIST accuracy run
# Fashion-MNIST: copy the four .gz files of /usr/share/datasets/fashion-mnist to gpu-data/ in the
# repository (untracked, not ignored: they travel with the working tree) or set DPT_FMNIST_DIR.
set -uo pipefail
cd "$(dirname "$0")/../.."
WHAT=${1:-all}
OUTDIR=${OUT:-$PWD/gpu-out}
mkdir -p "$OUTDIR"
BUILD=${BUILD:-build-gpu}
export DPT_FMNIST_DIR=${DPT_FMNIST_DIR:-$( [[ -e gpu-data/train-images-idx3-ubyte.gz ]] && echo "$PWD/gpu-data" )}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$OUTDIR/gpu.txt"
if [[ $WHAT == all || $WHAT == build || ! -x $BUILD/dptrain ]]; then
  gen=(); command -v ninja > /dev/null && gen=(-G Ninja)
  cmake -S . -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DDPT_WERROR=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 > "$OUTDIR/cmake.log" 2>&1 || { tail -30 "$OUTDIR/cmake.log"; exit 1; }
  cmake --build "$BUILD" -j "$(nproc)" > "$OUTDIR/build.log" 2>&1 || { grep -E 'error|Error' "$OUTDIR/build.log" | head -30; exit 1; }
  echo "build ok"
  "$BUILD/dptrain" info | tee -a "$OUTDIR/gpu.txt"
fi
rc=0
if [[ $WHAT == all || $WHAT == test || $WHAT == quick ]]; then
  if [[ $WHAT == quick ]]; then
    (cd "$BUILD" && ctest -L gpu -E test_gpu_train --output-on-failure) 2>&1 | tee "$OUTDIR/ctest-gpu.log" || rc=1
    bash tests/gpu/test_gpu_train.sh "$BUILD/dptrain" "$PWD" quick 2>&1 | tee "$OUTDIR/test_gpu_train.log" || rc=1
  else
    (cd "$BUILD" && ctest -L gpu --output-on-failure) 2>&1 | tee "$OUTDIR/ctest-gpu.log" || rc=1
  fi
fi
if [[ $WHAT == all || $WHAT == bench ]]; then
  bash benchmarks/gpu_vs_torch.sh "${2:-3}" "${3:-30}" "$BUILD" 2>&1 | tee "$OUTDIR/gpu_vs_torch.txt" || rc=1
  cp "$BUILD/bench/gpu_vs_torch.jsonl" "$OUTDIR/" 2>/dev/null
fi
exit $rc
