#!/usr/bin/env bash
# install-deps.sh: installs what dptrain needs on Debian 12, only the packages that are missing.
# Idempotent; uses apt-get as root or through sudo. Usage: scripts/install-deps.sh [--bench] [--fuzz]
#   --bench  also install what the benchmarks need: python3-torch and python3-torchvision (the
#            model-zoo twins of benchmarks/torch_models.py use torchvision's resnet50 and
#            efficientnet_b0), python3-venv (benchmarks/models_vs_torch.sh makes benchmarks/.venv
#            with PyPI's current torch), and libtorch-dev and pybind11-dev (the C++ headers
#            Horovod's build needs, benchmarks/netns_compress.sh HOROVOD=try)
#   --fuzz   also install clang (libFuzzer) for tests/fuzz
# It says which packages it installs and why; apt-get's own output goes to a log file
# (${TMPDIR:-/tmp}/dptrain-install-deps.XXXXXX.log, named on the terminal), and on failure the
# log's last 30 lines are shown and the exit status is non-zero.
# DPT_DEPS_EXTRA="pkg ..." adds packages (to try the install path, or for local needs).
set -euo pipefail

# Groups: name, why, packages. Only "base" is always wanted.
groups=(base)
declare -A why=(
  [base]="build, unit/MPI/e2e tests, the default Fashion-MNIST run"
  [bench]="--bench: the PyTorch/Horovod peers of the benchmarks"
  [fuzz]="--fuzz: clang's libFuzzer for tests/fuzz"
  [extra]="DPT_DEPS_EXTRA"
)
declare -A members=(
  [base]="build-essential cmake pkg-config libopenmpi-dev openmpi-bin libopenblas-dev libdnnl-dev
          libzstd-dev zlib1g-dev libturbojpeg0-dev check dataset-fashion-mnist gnuplot-nox tmux"
  [bench]="python3-torch python3-torchvision python3-venv libtorch-dev pybind11-dev"
  [fuzz]="clang"
  [extra]="${DPT_DEPS_EXTRA:-}"
)
for a in "$@"; do
  case $a in
    --bench) groups+=(bench) ;;
    --fuzz) groups+=(fuzz) ;;
    *) echo "install-deps: unknown option $a" >&2; exit 2 ;;
  esac
done
if [[ -n ${DPT_DEPS_EXTRA:-} ]]; then groups+=(extra); fi

installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }

total=0
missing=()
declare -A missing_in=()
for g in "${groups[@]}"; do
  for p in ${members[$g]}; do
    total=$((total + 1))
    if ! installed "$p"; then
      missing+=("$p")
      missing_in[$g]+=" $p"
    fi
  done
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all $total packages present"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi

echo "install-deps: installing ${#missing[@]} of $total packages:"
for g in "${groups[@]}"; do
  if [[ -n ${missing_in[$g]:-} ]]; then
    echo "install-deps:   ${missing_in[$g]# }  (${why[$g]})"
  fi
done
log=$(mktemp --suffix=.log "${TMPDIR:-/tmp}/dptrain-install-deps.XXXXXX")
echo "install-deps: apt-get update + install${sudo:+ (through sudo)}, output in $log"

# sudo drops the environment, so DEBIAN_FRONTEND goes through env; Use-Pty=0 keeps dpkg's
# progress bar out of the log.
apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o Dpkg::Use-Pty=0)
if [[ -n $sudo ]]; then apt=(sudo "${apt[@]}"); fi
run() {
  local what=$1
  shift
  echo "+ $*" >>"$log"
  local rc=0
  "$@" >>"$log" 2>&1 </dev/null || rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "install-deps: $what failed (exit $rc); the last 30 lines of $log:" >&2
    tail -n 30 "$log" | sed 's/^/  | /' >&2
    exit "$rc"
  fi
}
run "apt-get update" "${apt[@]}" update
run "apt-get install" "${apt[@]}" install -y --no-install-recommends "${missing[@]}"
echo "install-deps: done (${#missing[@]} installed)"
