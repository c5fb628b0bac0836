# netns_lib.sh: what the namespace benchmarks (netns_allreduce.sh, netns_compress.sh) share.
# Sourced, not run.

# Payload bytes per second of a tc rate such as 200mbit or 1gbit.
rate_Bps() {
  awk -v r="${1,,}" 'BEGIN {
    if (!match(r, /^[0-9.]+/)) { print 0; exit }
    n = substr(r, 1, RLENGTH); u = substr(r, RLENGTH + 1)
    m = u ~ /^k/ ? 1e3 : u ~ /^m/ ? 1e6 : u ~ /^g/ ? 1e9 : 1
    printf "%.0f\n", n * m / (u ~ /bit$/ ? 8 : 1) }'
}
