#!/usr/bin/env bash
# Interleaved A/B of a cold S3 read for two hexz binaries, with the S3 server's CPU: the
# S3 comparisons in docs/BENCHMARKS.md. Starts SeaweedFS on loopback (stopped on exit), has
# each binary pack the image and push its own archive (so a packer change is measured too),
# then ROUNDS rounds of: the signed curl GET of the old binary's object, `OLD cat`, `NEW cat`.
# Prints wall and CPU seconds of each read and the CPU SeaweedFS spent on it.
#   scripts/ab-s3.sh OLD_HEXZ NEW_HEXZ [ROUNDS]     # image: bench-data/system.img
set -euo pipefail
trap 'echo "ab-s3.sh: failed at line $LINENO" >&2' ERR
old=$(realpath "$1") new=$(realpath "$2") rounds=${3:-4}
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
. scripts/weed-lib.sh
s3_bench_setup abs3
for side in old new; do
  bin=${!side}
  "$bin" pack --disk "$img" -o "$work/$side.hxz" >/dev/null 2>&1
  "$bin" push "$work/$side.hxz" "s3://bench/$side.hxz" >/dev/null 2>&1
  rm -f "$work/$side.hxz"
done
wcpu() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$weed_pid/stat"; }
read_one() { # LABEL BIN OBJECT
  local w0 w1
  w0=$(wcpu)
  /usr/bin/time -f "%e %U %S %M" -o "$work/t" "$2" cat "s3://bench/$3" >/dev/null
  w1=$(wcpu)
  read -r e u s m <"$work/t"
  printf '%s: %s s, hexz CPU %.2f s, SeaweedFS CPU %.2f s, peak RSS %d MB\n' \
    "$1" "$e" "$(echo "$u + $s" | bc)" "$(echo "$w1 - $w0" | bc)" $(( m / 1024 ))
}
for _ in $(seq "$rounds"); do
  s=$(date +%s.%N)
  curl -s -o /dev/null --aws-sigv4 "aws:amz:us-east-1:s3" --user benchkey:benchsecret \
    "$AWS_ENDPOINT_URL/bench/old.hxz"
  printf 'curl: %.2f s\n' "$(echo "$(date +%s.%N) - $s" | bc)"
  read_one old "$old" old.hxz
  read_one new "$new" new.hxz
done
