#!/usr/bin/env bash
# Durable writes (issue 12): pack and extract on a real disk against lz4/zstd writing their
# own output files in the same run, peak RSS of pack/extract/cat/flatten, and the same pack
# and extract on tmpfs beside them.
#
#   scripts/bench-durable.sh                 # input: first 1280 MiB of bench-data/system.img
#   RUNS=5 INPUT_MB=2048 scripts/bench-durable.sh
#   BENCH_DIR=/var/tmp/x scripts/bench-durable.sh   # where outputs go (must not be tmpfs)
#
# hexz output is durable (fdatasync + atomic rename) when it exits; lz4/zstd leave theirs in
# the page cache, so they are also timed followed by `sync FILE` (fsync of that file).
# Prints a markdown report and saves it to bench-data/durable-results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
command -v hyperfine >/dev/null || scripts/deps.sh bench
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
cargo build --release -p hexz-cli >/dev/null
hexz=$PWD/target/release/hexz
runs=${RUNS:-3}
mb=${INPUT_MB:-1280}
data=$PWD/bench-data
mkdir -p "$data"
img=${BENCH_IMAGE:-$data/system.img}
[ -f "$img" ] || scripts/mkimage.sh "$img" 2G
dir=${BENCH_DIR:-/var/tmp/hexz-bench-durable}
mkdir -p "$dir"
fs=$(findmnt -n -o FSTYPE -T "$dir")
[ "$fs" != tmpfs ] || { echo "bench-durable: $dir is on tmpfs; give BENCH_DIR on a disk" >&2; exit 1; }
dev=$(findmnt -n -o SOURCE -T "$dir")
shm=/dev/shm/hexz-bench-durable
rm -rf "$shm"; mkdir -p "$shm"
trap 'rm -rf "$shm" "$dir"/out.* "$dir"/*.hxz "$dir"/*.lz4 "$dir"/*.zst' EXIT
in=$dir/input.img
head -c "$((mb << 20))" "$img" > "$in"
cat "$in" >/dev/null   # every tool reads the input from the page cache

hf() { hyperfine --style none --runs "$runs" --export-json "$@" >/dev/null; }
clean="rm -f $dir/out.* && sync"

echo "pack on $dir ($fs)..." >&2
hf "$data/durable-pack.json" --prepare "$clean" \
  -n "lz4 -1" "lz4 -1 -q -f $in $dir/out.lz4" \
  -n "lz4 -1 + fsync" "lz4 -1 -q -f $in $dir/out.lz4 && sync $dir/out.lz4" \
  -n "hexz pack lz4 64K" "$hexz pack --disk $in -o $dir/out.hxz" \
  -n "zstd -3 -T0" "zstd -3 -T0 -q -f $in -o $dir/out.zst" \
  -n "zstd -3 -T0 + fsync" "zstd -3 -T0 -q -f $in -o $dir/out.zst && sync $dir/out.zst" \
  -n "hexz pack zstd-3 64K" "$hexz pack --disk $in -o $dir/out.hxz --compression zstd"

echo "extract on $dir..." >&2
lz4 -1 -q -f "$in" "$dir/a.lz4"
"$hexz" pack --disk "$in" -o "$dir/a.hxz"
"$hexz" pack --disk "$in" -o "$dir/z.hxz" --compression zstd
zstd -3 -T0 -q -f "$in" -o "$dir/a.zst"
cat "$dir/a.lz4" "$dir/a.hxz" "$dir/a.zst" "$dir/z.hxz" >/dev/null
hf "$data/durable-extract.json" --prepare "$clean" \
  -n "lz4 -d" "lz4 -d -q -f $dir/a.lz4 $dir/out.img" \
  -n "lz4 -d + fsync" "lz4 -d -q -f $dir/a.lz4 $dir/out.img && sync $dir/out.img" \
  -n "hexz extract (lz4)" "$hexz extract $dir/a.hxz -o $dir/out.img" \
  -n "zstd -d" "zstd -d -q -f $dir/a.zst -o $dir/out.img" \
  -n "hexz extract (zstd-3)" "$hexz extract $dir/z.hxz -o $dir/out.img"

echo "cat into a pipe, flatten..." >&2
hf "$data/durable-cat.json" \
  -n "lz4 -d -c | cat" "lz4 -d -q -c $dir/a.lz4 | cat > /dev/null" \
  -n "hexz cat | cat" "$hexz cat $dir/a.hxz | cat > /dev/null"
hf "$data/durable-flatten.json" --prepare "$clean" \
  -n "hexz flatten (lz4)" "$hexz flatten $dir/a.hxz -o $dir/out.hxz"

echo "tmpfs..." >&2
hf "$data/durable-tmpfs.json" --prepare "rm -f $shm/out.*" \
  -n "lz4 -1" "lz4 -1 -q -f $in $shm/out.lz4" \
  -n "hexz pack lz4 64K" "$hexz pack --disk $in -o $shm/out.hxz" \
  -n "lz4 -d" "lz4 -d -q -f $dir/a.lz4 $shm/out.img" \
  -n "hexz extract (lz4)" "$hexz extract $dir/a.hxz -o $shm/out.img"

echo "peak RSS..." >&2
rss() { local f=$1; shift; /usr/bin/time -f %M -o "$f" "$@" >/dev/null 2>&1; cat "$f"; }
rm -f "$dir"/out.*
r_pack=$(rss "$data/rss" "$hexz" pack --disk "$in" -o "$dir/out.hxz"); rm -f "$dir"/out.*
r_ext=$(rss "$data/rss" "$hexz" extract "$dir/a.hxz" -o "$dir/out.img"); rm -f "$dir"/out.*
r_flat=$(rss "$data/rss" "$hexz" flatten "$dir/a.hxz" -o "$dir/out.hxz"); rm -f "$dir"/out.*
/usr/bin/time -f %M -o "$data/rss" "$hexz" cat "$dir/a.hxz" 2>/dev/null | cat >/dev/null
r_cat=$(cat "$data/rss")
r_lz4d=$(rss "$data/rss" lz4 -d -q -f "$dir/a.lz4" "$dir/out.img"); rm -f "$dir"/out.* "$data/rss"

python3 - "$data" "$mb" "$runs" "$fs" "$dev" "$r_pack" "$r_ext" "$r_cat" "$r_flat" "$r_lz4d" <<'EOF' | tee "$data/durable-results.md"
import json, sys, statistics
data, mb, runs, fs, dev = sys.argv[1:6]
r_pack, r_ext, r_cat, r_flat, r_lz4d = (int(x) / 1024 for x in sys.argv[6:11])
mb = int(mb)
def load(n):
    return {r["command"]: statistics.median(r["times"]) for r in json.load(open(f"{data}/durable-{n}.json"))["results"]}
pack, ext, cat, flat, tmp = (load(n) for n in ("pack", "extract", "cat", "flatten", "tmpfs"))
def table(title, d):
    print(f"| {title} | median s | MiB/s |\n|---|---:|---:|")
    for k, v in d.items():
        print(f"| {k} | {v:.2f} | {mb / v:.0f} |")
    print()
print(f"Input: first {mb} MiB of bench-data/system.img (ext4 image of /usr); outputs on {dev} ({fs}); medians of {runs} runs.\n")
table("pack (output on disk)", pack)
table("extract (output on disk)", ext)
table("stream into a pipe", cat)
table("flatten (output on disk)", flat)
table("on tmpfs (/dev/shm)", tmp)
print(f"Peak RSS (/usr/bin/time %M): pack {r_pack:.0f} MB, extract {r_ext:.0f} MB, cat into a pipe {r_cat:.0f} MB, flatten {r_flat:.0f} MB (lz4 -d: {r_lz4d:.0f} MB).\n")
def t(name, ok, fig):
    print(f"| {name} | {fig} | {'met' if ok else '**not met**'} |")
print("| target | measured | |\n|---|---:|---|")
x = pack["lz4 -1"] / pack["hexz pack lz4 64K"]
t("pack lz4 64K on disk (durable) >= 1.5x `lz4 -1`", x >= 1.5, f"{x:.2f}x ({pack['lz4 -1 + fsync'] / pack['hexz pack lz4 64K']:.2f}x vs lz4 -1 + fsync)")
x = pack["zstd -3 -T0"] / pack["hexz pack zstd-3 64K"]
t("pack zstd-3 on disk vs `zstd -3 -T0` (no target; for reference)", True, f"{x:.2f}x")
x = ext["lz4 -d"] / ext["hexz extract (lz4)"]
t("extract on disk (durable) >= 1.3x `lz4 -d`", x >= 1.3, f"{x:.2f}x ({ext['lz4 -d + fsync'] / ext['hexz extract (lz4)']:.2f}x vs lz4 -d + fsync)")
for n, r in (("extract", r_ext), ("cat into a pipe", r_cat), ("flatten", r_flat), ("pack", r_pack)):
    t(f"peak RSS of {n} < 150 MB", r < 150, f"{r:.0f} MB")
x = cat["lz4 -d -c | cat"] / cat["hexz cat | cat"]
t("cat into a pipe vs `lz4 -d -c` into a pipe (for reference)", True, f"{x:.2f}x")
EOF
