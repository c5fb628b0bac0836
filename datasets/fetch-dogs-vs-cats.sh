#!/usr/bin/env bash
# fetch-dogs-vs-cats.sh: download and unpack the Dogs vs Cats images for `dptrain prepare`.
#
#   datasets/fetch-dogs-vs-cats.sh kaggle    DIR [--prepare OUT] [--size 64]
#   datasets/fetch-dogs-vs-cats.sh petimages DIR [--prepare OUT] [--size 64]
#
# kaggle:    the competition data through the Kaggle CLI (`pip install kaggle`, an API token in
#            ~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY, and the competition rules
#            accepted once at https://www.kaggle.com/c/dogs-vs-cats/rules). Unpacks train.zip into
#            DIR/train: 25,000 files cat.0.jpg .. cat.12499.jpg, dog.0.jpg .. dog.12499.jpg.
# petimages: Microsoft's "Kaggle Cats and Dogs Dataset" zip (curl or wget, about 800 MB), unpacked
#            into DIR/PetImages/Cat and DIR/PetImages/Dog, 12,501 .jpg files each. Some are
#            broken (e.g. Cat/666.jpg and Dog/11702.jpg are empty, a few are not JPEGs or are
#            truncated); `dptrain prepare` names and skips them.
# Both check the tools first, verify the file counts after unpacking, and print (or, with
# --prepare OUT, run) the matching `dptrain prepare` command.
#
# UNTESTED: the project's build and test machines have no internet access, so the download and
# unpack steps of this script have never been run by us. Only the argument and tool checks are
# exercised (tests/e2e/test_prepare.sh). The URL and the counts are the published ones; if a
# count check fails, the message says what was expected and what was found.
set -euo pipefail

PETIMAGES_URL="https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip"
KAGGLE_PER_CLASS=12500
PETIMAGES_PER_CLASS=12501

die() { echo "fetch-dogs-vs-cats: $*" >&2; exit 1; }
usage() {
  echo "usage: $0 kaggle|petimages DIR [--prepare OUT] [--size S]" >&2
  exit 2
}

[[ $# -ge 2 ]] || usage
source=$1
dir=$2
shift 2
prepare_out=""
size=64
while [[ $# -gt 0 ]]; do
  case $1 in
    --prepare) [[ $# -ge 2 ]] || usage; prepare_out=$2; shift 2 ;;
    --size) [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || usage; size=$2; shift 2 ;;
    *) usage ;;
  esac
done
[[ $source == kaggle || $source == petimages ]] || usage

need() {   # need TOOL HINT
  command -v "$1" > /dev/null || die "$1 not found: $2"
}
need unzip "install it (Debian: apt-get install unzip)"

count() {  # count DIR PATTERN: regular files matching PATTERN directly in DIR
  find "$1" -maxdepth 1 -type f -name "$2" | wc -l
}

check_count() {   # check_count WHAT FOUND WANT
  if [[ $2 -ne $3 ]]; then
    die "expected $3 $1, found $2 (incomplete download or a different release? delete the folder and retry)"
  fi
  echo "fetch-dogs-vs-cats: $2 $1: ok"
}

if [[ $source == kaggle ]]; then
  need kaggle "pip install kaggle (then put your API token in ~/.kaggle/kaggle.json)"
  conf="${KAGGLE_CONFIG_DIR:-$HOME/.kaggle}/kaggle.json"
  if [[ ! -f $conf && ( -z ${KAGGLE_USERNAME:-} || -z ${KAGGLE_KEY:-} ) ]]; then
    die "no Kaggle API token: create one at https://www.kaggle.com/settings and save it as $conf (or set KAGGLE_USERNAME and KAGGLE_KEY)"
  fi
  mkdir -p "$dir"
  echo "fetch-dogs-vs-cats: downloading the dogs-vs-cats competition data into $dir"
  if ! kaggle competitions download -c dogs-vs-cats -p "$dir"; then
    die "kaggle download failed; if it says 403, accept the rules at https://www.kaggle.com/c/dogs-vs-cats/rules first"
  fi
  # The CLI saves dogs-vs-cats.zip (holding train.zip, test1.zip, sampleSubmission.csv); older
  # versions saved train.zip itself.
  if [[ -f $dir/dogs-vs-cats.zip ]]; then
    unzip -q -o "$dir/dogs-vs-cats.zip" train.zip -d "$dir" || die "$dir/dogs-vs-cats.zip has no train.zip"
  fi
  [[ -f $dir/train.zip ]] || die "no $dir/train.zip after the download"
  unzip -q -o "$dir/train.zip" -d "$dir" || die "cannot unpack $dir/train.zip"
  check_count "cat.*.jpg in $dir/train" "$(count "$dir/train" 'cat.*.jpg')" $KAGGLE_PER_CLASS
  check_count "dog.*.jpg in $dir/train" "$(count "$dir/train" 'dog.*.jpg')" $KAGGLE_PER_CLASS
  input="$dir/train"
else
  if command -v curl > /dev/null; then
    fetch=(curl -fL --retry 3 -o)
  elif command -v wget > /dev/null; then
    fetch=(wget -O)
  else
    die "neither curl nor wget found (Debian: apt-get install curl)"
  fi
  mkdir -p "$dir"
  zip="$dir/kagglecatsanddogs_5340.zip"
  if [[ ! -s $zip ]]; then
    echo "fetch-dogs-vs-cats: downloading $PETIMAGES_URL"
    "${fetch[@]}" "$zip.part" "$PETIMAGES_URL" || die "download failed: $PETIMAGES_URL"
    mv "$zip.part" "$zip"
  fi
  unzip -q -o "$zip" -d "$dir" || die "cannot unpack $zip (delete it and retry)"
  [[ -d $dir/PetImages/Cat && -d $dir/PetImages/Dog ]] || die "$zip did not contain PetImages/Cat and PetImages/Dog"
  check_count "Cat/*.jpg" "$(count "$dir/PetImages/Cat" '*.jpg')" $PETIMAGES_PER_CLASS
  check_count "Dog/*.jpg" "$(count "$dir/PetImages/Dog" '*.jpg')" $PETIMAGES_PER_CLASS
  for f in Cat/666.jpg Dog/11702.jpg; do
    [[ -s $dir/PetImages/$f ]] || echo "fetch-dogs-vs-cats: note: $f is empty (known; prepare skips it)"
  done
  input="$dir/PetImages"
fi

out=${prepare_out:-$dir/shards-$size}
cmd=(prepare --input "$input" --output "$out" --size "$size")
if [[ -n $prepare_out ]]; then
  here=$(cd "$(dirname "$0")/.." && pwd)
  dpt=${DPTRAIN:-}
  [[ -n $dpt ]] || { [[ -x $here/build/dptrain ]] && dpt=$here/build/dptrain; } || true
  [[ -n $dpt ]] || dpt=$(command -v dptrain) || die "dptrain not found: build it (make build) or set DPTRAIN"
  echo "fetch-dogs-vs-cats: $dpt ${cmd[*]}"
  "$dpt" "${cmd[@]}"
else
  echo "fetch-dogs-vs-cats: done. Next:"
  echo "  build/dptrain ${cmd[*]}"
  echo "  build/dptrain train --model models/dvc-resnet.cfg --data shards:$out --random-resized-crop"
fi
