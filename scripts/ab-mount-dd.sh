#!/usr/bin/env bash
# A/B of a sequential read through `hexz mount`: two hexz binaries alternate, N rounds;
# each round mounts, drops the page cache, times `dd bs=1M` of the disk, unmounts; the
# in-process read (`hexz cat` of the first binary to /dev/null) is timed in the same rounds.
# Prints each one's runs and median in seconds. Root (mount, drop_caches).
#   scripts/ab-mount-dd.sh OLD_HEXZ NEW_HEXZ ARCHIVE [ROUNDS, default 9]
set -euo pipefail
old=$1 new=$2 arc=$3 n=${4:-9}
mp=$(mktemp -d /tmp/hexz-ab-mnt.XXXXXX)
trap 'mountpoint -q "$mp" && fusermount3 -u "$mp"; rmdir "$mp"' EXIT
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b-a}'; }
for _ in $(seq "$n"); do
  for v in old new; do
    bin=${!v}
    "$bin" mount "$arc" "$mp"; cold
    echo "$v $(secs dd if="$mp/disk" of=/dev/null bs=1M)"
    "$bin" unmount "$mp"
  done
  cold; echo "cat $(secs sh -c "$old cat $arc > /dev/null")"
done | python3 -c '
import collections, statistics, sys
d = collections.defaultdict(list)
for line in sys.stdin:
    k, v = line.split(); d[k].append(float(v))
for k, v in d.items():
    print(f"{k:4s} median {statistics.median(v):.2f} s  runs {v}")'
