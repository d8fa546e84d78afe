#!/usr/bin/env bash
# Core benchmarks for docs/BENCHMARKS.md: pack and read throughput of hexz against lz4 and
# zstd on the same real ext4 image in the same run, random-read latency, and peak memory
# while packing a 4 GiB input from a pipe.
#
#   scripts/bench.sh            # builds bench-data/system.img (2 GiB ext4 of /usr) if missing
#   RUNS=7 scripts/bench.sh     # more runs per command (default 5)
#   REUSE=1 scripts/bench.sh    # keep the saved timings, redo memory and sizes, re-render
#
# Outputs of every tool go to tmpfs (/dev/shm) so that all of them are measured on CPU, not
# on this machine's disk. Prints a markdown report and saves it to bench-data/core-results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
scripts/deps.sh bench
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
cargo build --release --locked -p hexz-cli -p hexz-core --examples --bins >/dev/null
hexz=$PWD/target/release/hexz
runs=${RUNS:-5}
data=$PWD/bench-data
img=${BENCH_IMAGE:-$data/system.img}
[ -f "$img" ] || scripts/mkimage.sh "$img" 2G
out=/dev/shm/hexz-bench
rm -rf "$out"; mkdir -p "$out"
trap 'rm -rf "$out"' EXIT
cat "$img" >/dev/null   # warm the page cache: every tool reads the input from memory

hf() { hyperfine --style none --runs "$runs" --warmup 1 --export-json "$@" >/dev/null; }

if [ -z "${REUSE:-}" ]; then
echo "pack..." >&2
hf "$data/pack.json" \
  -n "lz4 -1" "lz4 -1 -q -f $img $out/img.lz4" \
  -n "zstd -3 -T2" "zstd -3 -T2 -q -f $img -o $out/img.zst" \
  -n "hexz pack lz4 64K" "$hexz pack --disk $img -o $out/lz4.hxz --compression lz4 --block-size 64K" \
  -n "hexz pack zstd-3 64K" "$hexz pack --disk $img -o $out/zstd.hxz --compression zstd --level 3 --block-size 64K" \
  -n "hexz pack zstd-3 256K" "$hexz pack --disk $img -o $out/zstd256.hxz --compression zstd --level 3 --block-size 256K" \
  -n "hexz pack zstd-3 1M" "$hexz pack --disk $img -o $out/zstd1m.hxz --compression zstd --level 3 --block-size 1M"

echo "read..." >&2
hf "$data/read.json" \
  -n "lz4 -d" "lz4 -d -q -c $out/img.lz4 > /dev/null" \
  -n "hexz cat (lz4)" "$hexz cat $out/lz4.hxz > /dev/null" \
  -n "zstd -d" "zstd -d -q -c $out/img.zst > /dev/null" \
  -n "hexz cat (zstd-3 64K)" "$hexz cat $out/zstd.hxz > /dev/null"

echo "random reads..." >&2
target/release/examples/readbench "$out/lz4.hxz" > "$data/readbench-lz4.json"
target/release/examples/readbench "$out/zstd.hxz" > "$data/readbench-zstd.json"
fi  # REUSE=1 skips the timed runs above and re-renders from the saved results

echo "memory (4 GiB from a pipe)..." >&2
rm -f "$out"/*.hxz "$out"/img.*
four=$(( 4 << 30 ))
set +o pipefail   # the producer loop ends by SIGPIPE when head has had 4 GiB
{ while :; do cat "$img"; done; } 2>/dev/null | head -c "$four" \
  | /usr/bin/time -f '%M' -o "$data/pack4g.rss" "$hexz" pack --disk - -o "$out/4g.hxz" 2>/dev/null
{ while :; do cat "$img"; done; } 2>/dev/null | head -c "$four" \
  | /usr/bin/time -f '%M' -o "$data/pack4g-zstd.rss" "$hexz" pack --disk - -o "$out/4g.hxz" --compression zstd 2>/dev/null
set -o pipefail

# Sizes of the outputs (recreated once, outside the timed runs).
lz4 -1 -q -f "$img" "$out/img.lz4"; zstd -3 -T2 -q -f "$img" -o "$out/img.zst"
"$hexz" pack --disk "$img" -o "$out/lz4.hxz" 2>/dev/null
"$hexz" pack --disk "$img" -o "$out/zstd.hxz" --compression zstd --level 3 2>/dev/null
"$hexz" pack --disk "$img" -o "$out/zstd256.hxz" --compression zstd --level 3 --block-size 256K 2>/dev/null
"$hexz" pack --disk "$img" -o "$out/zstd1m.hxz" --compression zstd --level 3 --block-size 1M 2>/dev/null
sizes="img=$(stat -c %s "$img") lz4=$(stat -c %s "$out/img.lz4") zst=$(stat -c %s "$out/img.zst") hlz4=$(stat -c %s "$out/lz4.hxz") hzstd=$(stat -c %s "$out/zstd.hxz") hzstd256=$(stat -c %s "$out/zstd256.hxz") hzstd1m=$(stat -c %s "$out/zstd1m.hxz")"

python3 - "$data" "$sizes" "$runs" <<'PY' | tee "$data/core-results.md"
import json, sys, statistics
data, sizes, runs = sys.argv[1], dict(kv.split("=") for kv in sys.argv[2].split()), sys.argv[3]
img = int(sizes["img"])
def med(path):
    return {r["command"]: statistics.median(r["times"]) for r in json.load(open(path))["results"]}
p, r = med(f"{data}/pack.json"), med(f"{data}/read.json")
mib = lambda s: img / s / 2**20
print(f"Input: {img/2**30:.2f} GiB ext4 image of /usr (libraries, binaries, headers, docs); medians of {runs} runs.\n")
print("| pack | median s | MiB/s | output | ratio |")
print("|---|---:|---:|---:|---:|")
for name, key in [("lz4 -1", "lz4"), ("zstd -3 -T2", "zst"), ("hexz pack lz4 64K", "hlz4"),
                  ("hexz pack zstd-3 64K", "hzstd"), ("hexz pack zstd-3 256K", "hzstd256"),
                  ("hexz pack zstd-3 1M", "hzstd1m")]:
    n = int(sizes[key])
    print(f"| {name} | {p[name]:.2f} | {mib(p[name]):.0f} | {n/2**20:.0f} MiB | {img/n:.2f}x |")
print("\n| read whole stream | median s | MiB/s |")
print("|---|---:|---:|")
for name in r:
    print(f"| {name} | {r[name]:.2f} | {mib(r[name]):.0f} |")
rb = json.load(open(f"{data}/readbench-lz4.json")); rz = json.load(open(f"{data}/readbench-zstd.json"))
rss = int(open(f"{data}/pack4g.rss").read().split()[-1]); rssz = int(open(f"{data}/pack4g-zstd.rss").read().split()[-1])
print("\n| random 4 KiB reads | lz4 archive | zstd archive |")
print("|---|---:|---:|")
for k, label in [("cached_4k_ns", "cached block (ns)"),
                 ("uncached_4k_ns", "uncached, bound CRC32 checked (default, format 1.1) (ns)"),
                 ("uncached_4k_blake3_ns", "uncached, CRC32 + BLAKE3 checked (format 1.0, `verify_full`) (ns)"),
                 ("uncached_4k_nohash_ns", "uncached, CRC32 only (`verify_hashes: false`) (ns)"),
                 ("decompress_ns", "decompress one block alone (ns)"),
                 ("uncached_over_decompress", "uncached (bound CRC, default) / decompress"),
                 ("uncached_blake3_over_decompress", "uncached (CRC+BLAKE3) / decompress"),
                 ("uncached_nohash_over_decompress", "uncached (CRC only) / decompress")]:
    print(f"| {label} | {rb[k]:,.2f} | {rz[k]:,.2f} |")
print(f"\nPeak RSS packing 4 GiB from a pipe: {rss/1024:.0f} MB (lz4), {rssz/1024:.0f} MB (zstd-3).\n")
t = lambda ok: "met" if ok else "NOT met"
lz4x = p["lz4 -1"] / p["hexz pack lz4 64K"]
zx = p["zstd -3 -T2"] / p["hexz pack zstd-3 64K"]; zsize = int(sizes["hzstd"]) / int(sizes["zst"])
zx256 = p["zstd -3 -T2"] / p["hexz pack zstd-3 256K"]; zsize256 = int(sizes["hzstd256"]) / int(sizes["zst"])
rx = r["lz4 -d"] / r["hexz cat (lz4)"]
print("| target | measured | |")
print("|---|---:|---|")
print(f"| pack lz4 64K >= 1.5x `lz4 -1` | {lz4x:.2f}x | {t(lz4x >= 1.5)} |")
print(f"| pack zstd-3 >= `zstd -3 -T2` speed, <= +10% size (64K blocks) | {zx:.2f}x speed, {100*(zsize-1):+.1f}% size | {t(zx >= 1 and zsize <= 1.10)} |")
print(f"| same with 256K blocks | {zx256:.2f}x speed, {100*(zsize256-1):+.1f}% size | {t(zx256 >= 1 and zsize256 <= 1.10)} |")
zx1m = p["zstd -3 -T2"] / p["hexz pack zstd-3 1M"]; zsize1m = int(sizes["hzstd1m"]) / int(sizes["zst"])
print(f"| same with 1M blocks | {zx1m:.2f}x speed, {100*(zsize1m-1):+.1f}% size | {t(zx1m >= 1 and zsize1m <= 1.10)} |")
print(f"| `hexz cat` >= 1.3x `lz4 -d` | {rx:.2f}x | {t(rx >= 1.3)} |")
print(f"| cached 4 KiB read < 1 us | {rb['cached_4k_ns']:.0f} ns | {t(rb['cached_4k_ns'] < 1000)} |")
print(f"| uncached 4 KiB read <= 1.5x decompress (CRC32 check) | {rb['uncached_nohash_over_decompress']:.2f}x | {t(rb['uncached_nohash_over_decompress'] <= 1.5)} |")
print(f"| same with the content check (default: bound CRC, format 1.1) | {rb['uncached_over_decompress']:.2f}x (CRC + BLAKE3: {rb['uncached_blake3_over_decompress']:.2f}x) | {t(rb['uncached_over_decompress'] <= 1.5)} |")
print(f"| peak memory packing 4 GiB < 150 MB | {max(rss, rssz)/1024:.0f} MB | {t(max(rss, rssz) < 150*1024)} |")
PY
