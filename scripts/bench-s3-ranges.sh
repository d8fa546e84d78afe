#!/usr/bin/env bash
# How much CPU the loopback S3 server (SeaweedFS) spends per range request: the same archive
# object read by one curl process as a chain of signed range GETs of several sizes (one
# connection, or PAR in parallel), against one whole-object GET. Explains the S3 row of
# bench-remote.sh (docs/BENCHMARKS.md, "Remote archives").
#
#   scripts/bench-s3-ranges.sh     # 2 GiB ext4 image of /usr (bench-data/system.img)
set -euo pipefail
trap 'echo "bench-s3-ranges.sh: failed at line $LINENO" >&2' ERR
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
scripts/deps.sh bench >/dev/null 2>&1 || true
cargo build --release -p hexz-cli >/dev/null 2>&1
hexz=$PWD/target/release/hexz
. scripts/weed-lib.sh
s3_bench_setup s3ranges
sign=(--aws-sigv4 "aws:amz:us-east-1:s3" --user benchkey:benchsecret)
"$hexz" pack --disk "$img" -o "$work/a.hxz" >/dev/null 2>&1
"$hexz" push "$work/a.hxz" s3://bench/a.hxz >/dev/null 2>&1
asize=$(stat -c %s "$work/a.hxz")
obj=$AWS_ENDPOINT_URL/bench/a.hxz
wpid=$weed_pid
wcpu() { awk '{printf "%.2f", ($14+$15)/100}' "/proc/$wpid/stat"; }
# One curl process fetching [0, asize) as ranges of $1 bytes, the first one $2 bytes long
# (0: ranges start at multiples of $1), $3 at a time (1: in order on one connection), each
# running $4 bytes past its end (into the next range, as a request whose last block crosses
# a line of the grid does); further arguments go to every request.
chain() {
  local size=$1 first=$2 par=$3 over=$4 a=0 b e args=()
  shift 4
  while [ "$a" -lt "$asize" ]; do
    if [ "$a" = 0 ] && [ "$first" != 0 ]; then b=$first; else b=$(( a + size )); fi
    [ "$b" -gt "$asize" ] && b=$asize
    e=$(( b + over )); [ "$e" -gt "$asize" ] && e=$asize
    args+=(-r "$a-$(( e - 1 ))" -o /dev/null "${sign[@]}" "$@" "$obj" --next)
    a=$b
  done
  unset 'args[${#args[@]}-1]'
  if [ "$par" = 1 ]; then curl -s "${args[@]}"; else curl -s -Z --parallel-max "$par" "${args[@]}" 2>/dev/null; fi
  echo $(( (asize + size - 1) / size ))
}
row() {
  local w0 s e w1 n
  w0=$(wcpu); s=$(date +%s.%N)
  if [ "$2" = whole ]; then curl -s -o /dev/null "${sign[@]}" "$obj"; n=1; else n=$(chain "${@:2}"); fi
  e=$(date +%s.%N); w1=$(wcpu)
  printf '| %s | %s | %.2f s | %.2f s |\n' "$1" "$n" "$(echo "$e - $s" | bc)" "$(echo "$w1 - $w0" | bc)"
}
# The object's ETag, which hexz pins at open and sends as If-Match on every later request.
etag=$(curl -s -I "${sign[@]}" "$obj" | awk -F': ' 'tolower($1) == "etag" {print $2}' | tr -d '\r')
echo "archive object: $asize bytes, ETag $etag"
echo "| ranges | requests | wall | SeaweedFS CPU |"
echo "|---|---:|---:|---:|"
for _ in 1 2; do
  row "one GET of the whole object" whole 0
  row "32 MiB, aligned" $((32 << 20)) 0 1 0
  row "32 MiB, aligned, 2 in parallel" $((32 << 20)) 0 2 0
  row "8 MiB, aligned" $((8 << 20)) 0 1 0
  row "8 MiB, aligned, 3 in parallel" $((8 << 20)) 0 3 0
  row "8 MiB, aligned, with If-Match" $((8 << 20)) 0 1 0 -H "If-Match: $etag"
  row "8 MiB + 64 KiB into the next part, 3 in parallel" $((8 << 20)) 0 3 $((64 << 10))
  row "8 MiB, 16 KiB off alignment, 3 in parallel" $((8 << 20)) $((16 << 10)) 3 0
  row "8 MiB, 1 MiB off alignment" $((8 << 20)) $((1 << 20)) 1 0
  row "3.7 MiB (hexz's mean request before 809162a)" 3880000 0 1 0
done
