#!/usr/bin/env bash
# Mount benchmarks for docs/BENCHMARKS.md ("Mount"), all in one run on the same data:
#  1. random 4 KiB read IOPS (fio, psync, 4 jobs, cold page cache) through `hexz mount`
#     against squashfuse_ll on a squashfs image holding the same raw image (LZ4, 64 KiB
#     blocks for both);
#  2. sequential read (dd bs=1M, cold) through the mount against the in-process library read
#     (`hexz cat` to /dev/null), and through squashfuse_ll for reference;
#  3. reads over NBD (`qemu-img convert` of the disk to a file on tmpfs) against the same
#     command reading the mounted file.
# Every figure is the median of RUNS runs (default 5); each run remounts and drops the page
# cache first. Needs root (mount, drop_caches). Data lives under WORK (default
# /var/tmp/hexz-bench-mount, a real disk); the 2 GiB ext4 image of /usr comes from
# scripts/mkimage.sh (or BENCH_IMAGE).
#
#   scripts/bench-mount.sh          # prints a markdown table, saved to WORK/results.md
#   HEXZ_BIN=path scripts/bench-mount.sh   # an already built hexz (no cargo build)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
scripts/deps.sh bench
if [ -z "${HEXZ_BIN:-}" ]; then cargo build --release -p hexz-cli >/dev/null; fi
hexz=${HEXZ_BIN:-$PWD/target/release/hexz}
runs=${RUNS:-5}
work=${WORK:-/var/tmp/hexz-bench-mount}
mkdir -p "$work"
img=${BENCH_IMAGE:-$work/system.img}
[ -f "$img" ] || scripts/mkimage.sh "$img" 2G
mh=$work/mnt-hexz; ms=$work/mnt-sq
mkdir -p "$mh" "$ms" "$work/sqsrc"
arc=$work/disk.hxz; sq=$work/disk.sqfs
[ -f "$arc" ] || "$hexz" pack --disk "$img" -o "$arc" --compression lz4 --block-size 64K
if [ ! -f "$sq" ]; then
  ln -f "$img" "$work/sqsrc/disk" 2>/dev/null || cp "$img" "$work/sqsrc/disk"
  mksquashfs "$work/sqsrc" "$sq" -comp lz4 -b 64K -noappend -no-progress -quiet >/dev/null
fi
out=/dev/shm/hexz-bench-mount; mkdir -p "$out"
srv=""
cleanup() {
  [ -n "$srv" ] && kill "$srv" 2>/dev/null || true
  for m in "$mh" "$ms"; do mountpoint -q "$m" && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; }; done
  rm -rf "$out"
}
trap cleanup EXIT
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
up_hexz() { mountpoint -q "$mh" && "$hexz" unmount "$mh"; cold; "$hexz" mount "$arc" "$mh"; }
up_sq() {
  mountpoint -q "$ms" && fusermount3 -u "$ms"; cold
  squashfuse_ll "$sq" "$ms"
  for _ in $(seq 100); do mountpoint -q "$ms" && break; sleep 0.05; done
}
down() { mountpoint -q "$mh" && "$hexz" unmount "$mh"; mountpoint -q "$ms" && fusermount3 -u "$ms"; true; }
size=$(stat -c %s "$img")
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
iops() { # fio random 4K reads of FILE; prints IOPS
  fio --name=rand --filename="$1" --rw=randread --bs=4k --ioengine=psync --numjobs=4 \
      --size="$size" --io_size=32M --randrepeat=1 --group_reporting --output-format=json \
    | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))'
}
mibs() { # seconds -> MiB/s of the image
  awk -v s="$1" -v n="$size" 'BEGIN {printf "%.0f", n/1048576/s}'
}
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN {print b-a}'; }

load=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A R
for i in $(seq "$runs"); do
  echo "run $i/$runs" >&2
  up_hexz; R[rh]+="$(iops "$mh/disk") "
  up_sq;   R[rs]+="$(iops "$ms/disk") "
  down
  up_hexz; R[sh]+="$(mibs "$(secs dd if="$mh/disk" of=/dev/null bs=1M)") "
  up_sq;   R[ss]+="$(mibs "$(secs dd if="$ms/disk" of=/dev/null bs=1M)") "
  down; cold
  R[sl]+="$(mibs "$(secs sh -c "$hexz cat $arc > /dev/null")") "
  # What filling the page cache with the image's size costs right now (a tmpfs write of
  # fresh pages): a read through the mount must fill that much page cache, `hexz cat` to
  # /dev/null none. On a VM whose host reclaims freed guest memory this swings widely.
  cold; R[pf]+="$(mibs "$(secs dd if=/dev/zero of="$out/fill" bs=1M count=$((size >> 20)))") "
  rm -f "$out/fill"
  up_hexz; R[qm]+="$(mibs "$(secs qemu-img convert -f raw -O raw "$mh/disk" "$out/copy.img")") "
  rm -f "$out/copy.img"; down; cold
  "$hexz" serve "$arc" --nbd 127.0.0.1:0 2> "$out/serve.log" & srv=$!
  for _ in $(seq 100); do grep -q ' on ' "$out/serve.log" 2>/dev/null && break; sleep 0.05; done
  addr=$(sed -n 's/.* on \([0-9.:]*\) .*/\1/p' "$out/serve.log" | head -1)
  R[qn]+="$(mibs "$(secs qemu-img convert -f raw -O raw "nbd://$addr/disk" "$out/copy.img")") "
  rm -f "$out/copy.img"; kill "$srv"; wait "$srv" || true; srv=""
done
m() { tr ' ' '\n' <<<"${R[$1]}" | grep . | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a/b}'; }
rh=$(m rh); rs=$(m rs); sh=$(m sh); ss=$(m ss); sl=$(m sl); qm=$(m qm); qn=$(m qn); pf=$(m pf)
# The mount/in-process ratio of each run (both measured minutes apart), then their median.
pairs=$(paste -d' ' <(tr ' ' '\n' <<<"${R[sh]}" | grep .) <(tr ' ' '\n' <<<"${R[sl]}" | grep .) \
  | awk '{printf "%.2f ", $1/$2}')
pr=$(tr ' ' '\n' <<<"$pairs" | grep . | median)
{
echo "Load average before: $load"
echo
echo "| measure (median of $runs, cold page cache) | hexz | reference | ratio | target |"
echo "|---|---:|---:|---:|---|"
echo "| random 4 KiB reads, fio psync 4 jobs (IOPS) | $rh (mount) | $rs (squashfuse_ll) | $(ratio "$rh" "$rs") | >= 1.5x |"
echo "| sequential read, dd bs=1M (MiB/s) | $sh (mount) | $sl (in-process, hexz cat) | $(ratio "$sh" "$sl") | >= 0.6x |"
echo "| sequential read, dd bs=1M, median of the runs' own ratios | | | ${pr}x | >= 0.6x |"
echo "| sequential read, dd bs=1M (MiB/s) | $sh (mount) | $ss (squashfuse_ll) | $(ratio "$sh" "$ss") | |"
echo "| page-cache fill of $((size >> 20)) MiB, dd to tmpfs (MiB/s) | | $pf | $(ratio "$sh" "$pf") | |"
echo "| qemu-img convert to tmpfs (MiB/s) | $qn (NBD) | $qm (mount) | $(ratio "$qn" "$qm") | |"
echo
echo "Raw runs: random IOPS hexz [${R[rh]% }] squashfuse [${R[rs]% }]; seq MiB/s mount [${R[sh]% }] in-process [${R[sl]% }] squashfuse [${R[ss]% }]; convert MiB/s NBD [${R[qn]% }] mount [${R[qm]% }]; page-cache fill MiB/s [${R[pf]% }]; mount/in-process per run [${pairs% }]"
} | tee "$work/results.md"
