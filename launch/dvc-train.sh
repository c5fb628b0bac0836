#!/usr/bin/env bash
# dvc-train.sh: Dogs vs Cats on one machine in one command: a JPEG folder (yours, or synthetic
# ones made by dpt-gen-jpegs) -> `dptrain prepare` (zstd shards; bad files named and skipped;
# a no-op when the shards are up to date) -> data-parallel training with launch/dptrain-run.
#
#   launch/dvc-train.sh [--jpegs DIR | --generate N] [--work DIR] [--size 64|32|S]
#                       [--model FILE] [-n RANKS] [-t THREADS] [--epochs E] [--batch B]
#                       [--lr X] [--dry-run] [-- MORE TRAIN FLAGS]
#
#   --jpegs DIR     the JPEG folder: Kaggle's train/ (cat.0.jpg ...) or PetImages (Cat/, Dog/),
#                   e.g. from datasets/fetch-dogs-vs-cats.sh; without it, synthetic images are
#                   generated once into WORK/jpegs (--generate N of them, default 4000)
#   --work DIR      shards (WORK/shards-S), metrics (WORK/metrics.jsonl) and weights
#                   (WORK/weights.dpt) go here (default ./dvc-work)
#   --size S        image side given to prepare (default 64)
#   --model FILE    default: models/dvc-resnet.cfg for 64, models/dvc-small.cfg for 32
#   -n RANKS        MPI ranks (default 2); -t THREADS compute threads per rank (default
#                   cores / RANKS): both passed to launch/dptrain-run
#   --epochs E --batch B --lr X   training (defaults 10, 32 per rank, 0.2 for the global 64)
#   --dry-run       print the commands instead of running them
#   after --         more `dptrain train` flags, e.g. -- --loader-workers 2 --seed 3
#
# The binary is $DPTRAIN if set, else build/dptrain of this repository, else dptrain on PATH;
# the generator is $DPT_GEN_JPEGS if set, else datasets/dpt-gen-jpegs beside the binary.
# Examples:
#   launch/dvc-train.sh --size 32 --epochs 4        # 4,000 synthetic JPEGs, a few minutes on 2 cores
#   launch/dvc-train.sh --jpegs ~/data/dvc/train --work ~/data/dvc-run --epochs 20
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage() { sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die_usage() {
  echo "dvc-train: $*" >&2
  echo "usage: launch/dvc-train.sh [--jpegs DIR | --generate N] [--work DIR] [--size S] [--model FILE] [-n RANKS] [-t THREADS] [--epochs E] [--batch B] [--lr X] [--dry-run] [-- TRAIN FLAGS] (--help for more)" >&2
  exit 2
}
die() { echo "dvc-train: $*" >&2; exit 1; }
posint() { [[ $1 =~ ^[1-9][0-9]*$ ]] && ((${#1} <= 7)); }

jpegs="" generate=4000 work=dvc-work size=64 model="" ranks=2 threads="" epochs=10 batch=32
lr=0.2 dry=0
while [[ $# -gt 0 ]]; do
  [[ $1 == -- || $1 == --dry-run || $1 == -h || $1 == --help || $# -ge 2 ]] \
    || die_usage "$1 needs a value"
  case $1 in
    --jpegs) jpegs=$2; shift 2 ;;
    --generate) posint "$2" || die_usage "--generate: '$2' is not a positive integer"
      generate=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --size) posint "$2" || die_usage "--size: '$2' is not a positive integer"
      size=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    -n) posint "$2" || die_usage "-n: '$2' is not a positive integer"
      ranks=$2; shift 2 ;;
    -t) posint "$2" || die_usage "-t: '$2' is not a positive integer"
      threads=$2; shift 2 ;;
    --epochs) posint "$2" || die_usage "--epochs: '$2' is not a positive integer"
      epochs=$2; shift 2 ;;
    --batch) posint "$2" || die_usage "--batch: '$2' is not a positive integer"
      batch=$2; shift 2 ;;
    --lr) lr=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die_usage "unknown option '$1' (train flags go after --)" ;;
  esac
done
if [[ -z $model ]]; then
  case $size in
    64) model=$REPO/models/dvc-resnet.cfg ;;
    32) model=$REPO/models/dvc-small.cfg ;;
    *) die_usage "--size $size: give --model FILE too (the models here are for 64 and 32)" ;;
  esac
fi
[[ -f $model ]] || die "--model $model: no such file"

if [[ -n ${DPTRAIN:-} ]]; then
  bin=$DPTRAIN
elif [[ -x $REPO/build/dptrain ]]; then
  bin=$REPO/build/dptrain
elif command -v dptrain > /dev/null; then
  bin=$(command -v dptrain)
else
  die "no dptrain binary: set DPTRAIN, run 'make build' (makes $REPO/build/dptrain) or put dptrain on PATH"
fi
[[ -x $bin ]] || die "$bin is not an executable file"
gen=${DPT_GEN_JPEGS:-$(dirname "$bin")/datasets/dpt-gen-jpegs}

run() {
  echo "+ $*"
  ((dry)) || "$@"
}

shards=$work/shards-$size
((dry)) || mkdir -p "$work"
# 1. the JPEG folder
if [[ -z $jpegs ]]; then
  jpegs=$work/jpegs
  stamp=$work/.jpegs-$generate.done   # outside the folder: prepare would count it as a file
  if [[ -f $stamp ]]; then
    echo "dvc-train: using the $generate synthetic JPEGs in $jpegs"
  else
    [[ -x $gen ]] || ((dry)) || die "no JPEG folder given (--jpegs DIR) and no generator at $gen (set DPT_GEN_JPEGS)"
    ((dry)) || rm -rf "$jpegs" "$work"/.jpegs-*.done
    run "$gen" --out "$jpegs" --count "$generate" --seed 1
    ((dry)) || touch "$stamp"
  fi
else
  [[ -d $jpegs ]] || die "--jpegs $jpegs: not a directory"
fi

# 2. shards (prepare names and skips bad files on stderr; an unchanged re-run does nothing)
run "$bin" prepare --input "$jpegs" --output "$shards" --size "$size"

# 3. data-parallel training
topts=(-n "$ranks")
[[ -n $threads ]] && topts+=(-t "$threads")
((dry)) && topts+=(--dry-run)
echo "+ DPTRAIN=$bin $REPO/launch/dptrain-run ${topts[*]} -- train ..."
DPTRAIN=$bin "$REPO/launch/dptrain-run" "${topts[@]}" -- train --model "$model" \
  --data "shards:$shards" --random-resized-crop --epochs "$epochs" --batch "$batch" --lr "$lr" \
  --no-progress --metrics "$work/metrics.jsonl" --save "$work/weights.dpt" "$@"
((dry)) || echo "dvc-train: metrics in $work/metrics.jsonl, weights in $work/weights.dpt" \
  "(evaluate: $bin eval --model $model --data shards:$shards --weights $work/weights.dpt)"
