#!/usr/bin/env bash
# install-deps.sh: installs what dptrain needs on Debian 12, only the packages that are missing.
# Idempotent; uses apt-get as root or through sudo. Usage: scripts/install-deps.sh [--bench] [--fuzz]
#   --bench  also install what the benchmarks need (python3-torch)
#   --fuzz   also install clang (libFuzzer) for tests/fuzz
set -euo pipefail

pkgs=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libopenblas-dev libdnnl-dev
      libzstd-dev zlib1g-dev libturbojpeg0-dev check dataset-fashion-mnist gnuplot-nox)
for a in "$@"; do
  case $a in
    --bench) pkgs+=(python3-torch) ;;
    --fuzz) pkgs+=(clang) ;;
    *) echo "install-deps: unknown option $a" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
