#!/usr/bin/env bash
# Cost of encryption: pack and sequential-read throughput of hexz with and without --encrypt
# (lz4 and zstd-3, 64 KiB blocks) on the same real ext4 image in the same run, and the time
# one key derivation takes at the default settings (PBKDF2-HMAC-SHA256 600,000 iterations;
# Argon2id 64 MiB, t=3, p=1), measured as `hexz info` of a tiny encrypted archive minus
# `hexz info` of the same archive unencrypted.
#
#   scripts/bench-crypto.sh           # builds bench-data/system.img (2 GiB ext4 of /usr) if missing
#   RUNS=5 scripts/bench-crypto.sh    # more runs per command (default 3, at least 3)
#
# Archives are written to tmpfs (/dev/shm) so that the disk is not measured. Every timed
# encrypted command derives the key once (pack and cat alike), so the report gives the read
# cost both as measured and without that one-off derivation. Prints a markdown report and
# saves it to bench-data/crypto-results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
if ! command -v hyperfine >/dev/null 2>&1; then
  echo "bench-crypto: installing hyperfine" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq hyperfine >/dev/null
fi
command -v python3 >/dev/null || { echo "bench-crypto: python3 is needed for the report" >&2; exit 1; }
cargo build --release --locked -p hexz-cli >/dev/null
hexz=$PWD/target/release/hexz
runs=${RUNS:-3}
[ "$runs" -ge 3 ] || { echo "bench-crypto: RUNS must be at least 3" >&2; exit 1; }
data=$PWD/bench-data
mkdir -p "$data"
img=${BENCH_IMAGE:-$data/system.img}
[ -f "$img" ] || scripts/mkimage.sh "$img" 2G
out=/dev/shm/hexz-bench-crypto
rm -rf "$out"; mkdir -p "$out"
trap 'rm -rf "$out"' EXIT
# The password of every encrypted archive here (also harmlessly visible to the unencrypted
# commands, which ignore it).
export HEXZ_PASSWORD=hexz-benchmark-password
cat "$img" >/dev/null   # warm the page cache: every command reads the input from memory

hf() { hyperfine --style none --runs "$runs" --warmup 1 --export-json "$@" >/dev/null; }

echo "bench-crypto: pack ($runs runs each)..." >&2
hf "$data/crypto-pack.json" \
  -n "pack lz4" "$hexz pack --disk $img -o $out/lz4.hxz --compression lz4" \
  -n "pack lz4 --encrypt" "$hexz pack --disk $img -o $out/lz4-enc.hxz --compression lz4 --encrypt" \
  -n "pack zstd-3" "$hexz pack --disk $img -o $out/zstd.hxz --compression zstd --level 3" \
  -n "pack zstd-3 --encrypt" "$hexz pack --disk $img -o $out/zstd-enc.hxz --compression zstd --level 3 --encrypt"

echo "bench-crypto: sequential read ($runs runs each)..." >&2
hf "$data/crypto-read.json" \
  -n "cat lz4" "$hexz cat $out/lz4.hxz > /dev/null" \
  -n "cat lz4 encrypted" "$hexz cat $out/lz4-enc.hxz > /dev/null" \
  -n "cat zstd-3" "$hexz cat $out/zstd.hxz > /dev/null" \
  -n "cat zstd-3 encrypted" "$hexz cat $out/zstd-enc.hxz > /dev/null"

echo "bench-crypto: key derivation..." >&2
head -c 4096 "$img" > "$out/tiny.img"
"$hexz" pack --disk "$out/tiny.img" -o "$out/tiny.hxz" 2>/dev/null
"$hexz" pack --disk "$out/tiny.img" -o "$out/tiny-pbkdf2.hxz" --encrypt --kdf pbkdf2 2>/dev/null
"$hexz" pack --disk "$out/tiny.img" -o "$out/tiny-argon2id.hxz" --encrypt --kdf argon2id 2>/dev/null
kdf_runs=$(( runs < 10 ? 10 : runs ))
hyperfine --style none -N --runs "$kdf_runs" --warmup 2 --export-json "$data/crypto-kdf.json" \
  -n "info unencrypted" "$hexz info $out/tiny.hxz" \
  -n "info PBKDF2" "$hexz info $out/tiny-pbkdf2.hxz" \
  -n "info Argon2id" "$hexz info $out/tiny-argon2id.hxz" >/dev/null

sizes="img=$(stat -c %s "$img")"
for a in lz4 lz4-enc zstd zstd-enc; do sizes="$sizes $a=$(stat -c %s "$out/$a.hxz")"; done
kdfs=$("$hexz" info --json "$out/tiny-pbkdf2.hxz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["encryption"])')
kdfa=$("$hexz" info --json "$out/tiny-argon2id.hxz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["encryption"])')

python3 - "$data" "$sizes" "$runs" "$kdf_runs" "$kdfs" "$kdfa" "$(nproc)" <<'PY' | tee "$data/crypto-results.md"
import json, sys, statistics
data, sizes, runs, kdf_runs, kdfs, kdfa, cores = sys.argv[1:8]
sizes = {k: int(v) for k, v in (kv.split("=") for kv in sizes.split())}
img = sizes["img"]
def load(name):
    return {x["command"]: x for x in json.load(open(f"{data}/crypto-{name}.json"))["results"]}
def med(name):
    return {c: statistics.median(x["times"]) for c, x in load(name).items()}
# CPU seconds (user + system, mean over the runs): steadier than wall time on shared cores.
cpu = {c: x["user"] + x["system"] for c, x in {**load("pack"), **load("read")}.items()}
p, r, k = med("pack"), med("read"), med("kdf")
mib = lambda s: img / s / 2**20
pbkdf2 = k["info PBKDF2"] - k["info unencrypted"]
argon = k["info Argon2id"] - k["info unencrypted"]
print(f"Input: {img/2**30:.2f} GiB ext4 image of /usr (bench-data/system.img); 64 KiB blocks; "
      f"medians of {runs} runs (key derivation: {kdf_runs} runs); {cores} cores shared with other jobs, so expect noise.\n")
print("| pack | median s | MiB/s | CPU s | archive | vs unencrypted |")
print("|---|---:|---:|---:|---:|---:|")
for codec, key in [("lz4", "lz4"), ("zstd-3", "zstd")]:
    base = p[f"pack {codec}"]
    for enc in (False, True):
        name = f"pack {codec}" + (" --encrypt" if enc else "")
        t = p[name]; n = sizes[key + ("-enc" if enc else "")]
        c0 = cpu[f"pack {codec}"]
        rel = (f"{100*(t/base-1):+.1f}% time, {100*(cpu[name]/c0-1):+.1f}% CPU, "
               f"{100*(n/sizes[key]-1):+.2f}% size") if enc else ""
        print(f"| `hexz {name}` | {t:.2f} | {mib(t):.0f} | {cpu[name]:.2f} | {n/2**20:.0f} MiB | {rel} |")
print("\n| sequential read (`hexz cat > /dev/null`) | median s | MiB/s | CPU s | throughput cost | cost without the one key derivation | extra CPU |")
print("|---|---:|---:|---:|---:|---:|---:|")
costs = {}
for codec in ("lz4", "zstd-3"):
    base, c0 = r[f"cat {codec}"], cpu[f"cat {codec}"]
    print(f"| {codec} | {base:.2f} | {mib(base):.0f} | {c0:.2f} | | | |")
    name = f"cat {codec} encrypted"
    t = r[name]
    raw = 100 * (1 - base / t)
    steady_t = max(t - pbkdf2, 1e-9)
    steady = 100 * (1 - base / steady_t)
    costs[codec] = (raw, steady)
    print(f"| {codec} encrypted | {t:.2f} | {mib(t):.0f} | {cpu[name]:.2f} | {raw:.1f}% | "
          f"{steady:.1f}% ({mib(steady_t):.0f} MiB/s) | {100*(cpu[name]/c0-1):+.1f}% |")
print("\nThroughput cost = 1 - (unencrypted time / encrypted time). The encrypted archive's stored "
      "bytes are AES-256-GCM-decrypted once per block; the key is derived once per open.")
print("\n| key derivation at the defaults (`hexz info` of a 4 KiB archive) | median ms | minus unencrypted (ms) |")
print("|---|---:|---:|")
print(f"| unencrypted | {1000*k['info unencrypted']:.0f} | |")
print(f"| {kdfs} | {1000*k['info PBKDF2']:.0f} | {1000*pbkdf2:.0f} |")
print(f"| {kdfa} | {1000*k['info Argon2id']:.0f} | {1000*argon:.0f} |")
t = lambda ok: "met" if ok else "NOT met"
print("\n| target | measured | |")
print("|---|---:|---|")
for codec, (raw, steady) in costs.items():
    print(f"| read throughput cost of encryption <= 25% ({codec}, as measured, one PBKDF2 derivation included) | {raw:.1f}% | {t(raw <= 25)} |")
    print(f"| same without the one-off key derivation ({codec}) | {steady:.1f}% | {t(steady <= 25)} |")
PY
