#!/usr/bin/env bash
# Interleaved A/B of `hexz cat SOURCE > /dev/null` for two hexz binaries (the remote and
# local read comparisons in docs/BENCHMARKS.md): ROUNDS rounds, each `perf stat -r 5` of the
# old binary, then of the new one; prints CPU milliseconds, page faults and wall seconds.
#   scripts/ab-cat.sh OLD_HEXZ NEW_HEXZ SOURCE [ROUNDS] [-- extra cat args, e.g. --cache-dir D]
# SOURCE is a path or URL (a loopback URL needs HEXZ_ALLOW_RESTRICTED=1).
set -euo pipefail
old=$1 new=$2 src=$3 rounds=${4:-3}
shift $(( $# >= 4 ? 4 : 3 ))
[ "${1:-}" = -- ] && shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# One plain pass each first: a source that cannot be read fails here (perf stat does not).
for b in "$old" "$new"; do "$b" cat "$src" "$@" >/dev/null; done
for _ in $(seq "$rounds"); do
  for b in "$old" "$new"; do
    perf stat -r 5 -e task-clock,page-faults -o "$out" "$b" cat "$src" "$@" >/dev/null
    printf '%s: %s ms CPU, %s faults, %s s\n' "$b" \
      "$(awk '/task-clock/ {print $1}' "$out")" "$(awk '/page-faults/ {print $1}' "$out")" \
      "$(awk '/elapsed/ {print $1}' "$out")"
  done
done
