# lib.sh: helpers for the end-to-end shell tests (sourced). $DPT is the binary, $SRC the tree.
set -u
DPT=$1
SRC=$2
TMP=$(mktemp -d /tmp/dpt_e2e_XXXXXX)
trap 'rm -rf "$TMP"' EXIT
FAILS=0
PASSES=0

# expect_fail CODE SUBSTRING -- command...: the command must exit CODE and print SUBSTRING on stderr
expect_fail() {
  local code=$1 want=$2
  shift 3
  local err rc=0
  err=$("$@" 2>&1 >/dev/null) || rc=$?
  if [[ $rc -ne $code ]] || [[ "$err" != *"$want"* ]]; then
    echo "FAIL: $* -> exit $rc (want $code), stderr: $err (want: $want)"
    FAILS=$((FAILS + 1))
  elif [[ $(printf '%s\n' "$err" | grep -c .) -gt 3 ]] || [[ "$err" == *"AddressSanitizer"* ]]; then
    echo "FAIL: $* -> more than one short error: $err"
    FAILS=$((FAILS + 1))
  else
    PASSES=$((PASSES + 1))
  fi
}

# wait_for PATTERN FILE [SECONDS]: until FILE has a line matching PATTERN (default 60 s)
wait_for() {
  local i
  for ((i = 0; i < ${3:-60} * 10; i++)); do
    grep -q -- "$1" "$2" 2> /dev/null && return 0
    sleep 0.1
  done
  return 1
}

# rank_pid PATTERN R: the pid of MPI rank R among the processes whose command line matches PATTERN
rank_pid() {
  local pid r
  for pid in $(pgrep -f -- "$1"); do
    r=$(tr '\0' '\n' < "/proc/$pid/environ" 2> /dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')
    [[ $r == "$2" ]] && { echo "$pid"; return 0; }
  done
  return 1
}

ok() { PASSES=$((PASSES + 1)); }
bad() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }

# be32 N: 4 big-endian bytes
be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }

# make_idx DIR PREFIX N: IDX images (N x 28 x 28) and labels with the standard names
make_idx() {
  local dir=$1 prefix=$2 n=$3
  mkdir -p "$dir"
  { printf '\x00\x00\x08\x03'; be32 "$n"; be32 28; be32 28; head -c $((n * 784)) /dev/urandom; } > "$dir/$prefix-images-idx3-ubyte"
  { printf '\x00\x00\x08\x01'; be32 "$n"; for ((i = 0; i < n; i++)); do printf "\\x0$((i % 10))"; done; } > "$dir/$prefix-labels-idx1-ubyte"
}

finish() {
  echo "$PASSES passed, $FAILS failed"
  [[ $FAILS -eq 0 ]]
}
