#!/usr/bin/env bash
# File-tree benchmarks for docs/BENCHMARKS.md ("File trees"): hexz tree archives against
# mksquashfs/unsquashfs (same codec and block size) and tar | zstd, in the same run, on the
# same trees: size, pack time, peak memory, full extract time, reading 1,000 random
# files by path in one process, and through the mount against squashfuse_ll (1,000 random
# files, ls -R, find; a fresh mount for every run, since the page cache cannot be dropped).
#
#   scripts/bench-tree.sh                 # /usr/share/doc + /usr/include + /usr/share/perl5
#   TREE=/some/dir scripts/bench-tree.sh  # another tree
#   RUNS=5 scripts/bench-tree.sh          # runs per timed command (default 3)
#   SECTIONS=mount scripts/bench-tree.sh  # only the mount section (archives packed once)
#   SECTIONS=million scripts/bench-tree.sh  # peak memory packing 1,000,000 small files
#   SECTIONS=small scripts/bench-tree.sh    # 100,000 files of 4-150 KiB (SMALL_FILES=N to scale)
#
# Archives and extracted trees go to /var/tmp (a real disk); inputs are read once first so
# every tool starts from a warm page cache.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
for t in mksquashfs unsquashfs zstd hyperfine squashfuse_ll fusermount3 jq bc; do
  command -v "$t" >/dev/null || { echo "missing $t (scripts/deps.sh bench)" >&2; exit 1; }
done
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
# HEXZ_BIN=path uses an already built hexz (no cargo build).
if [ -z "${HEXZ_BIN:-}" ]; then cargo build --release --locked -p hexz-cli >/dev/null; fi
hexz=${HEXZ_BIN:-$PWD/target/release/hexz}
runs=${RUNS:-3}
sections=${SECTIONS:-pack extract read mount}
has() { case " $sections " in *" $1 "*) return 0;; esac; return 1; }
work=$(mktemp -d /var/tmp/hexz-bench-tree.XXXXXX)
trap 'rm -rf "$work"' EXIT
hf() { hyperfine --style none --runs "$runs" --warmup "${warmup:-1}" --export-json "$@" >/dev/null; }
peak() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }

# One million files (1,000 directories of 1,000 files of 0-255 bytes): peak memory of packing
# them (target: well under 150 MB plus the file table's stored size), against mksquashfs,
# and the time of one lookup by path in the archive.
if [ "$sections" = million ]; then
  m=$work/million
  echo "making 1,000,000 files..." >&2
  python3 - "$m" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(1000):
    dd = os.path.join(root, f"d{d:04}")
    os.makedirs(dd)
    for f in range(1000):
        with open(os.path.join(dd, f"file-{f:04}.txt"), "wb") as fh:
            fh.write(os.urandom((d * 7 + f) % 256).hex().encode()[: (d + f) % 256])
PY
  echo "packing..." >&2
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  t0=$(date +%s.%N)
  mem=$( { /usr/bin/time -f %M "$hexz" pack "$m" -o "$work/m.hxz" --compression zstd --level 3 --block-size 128K --json >"$work/m.json"; } 2>&1 | tail -1)
  t1=$(date +%s.%N)
  # SQUASHFS=0 skips mksquashfs (about 10 minutes on 2 cores for this tree).
  if [ "${SQUASHFS:-1}" = 0 ]; then sqmem=0; : >"$work/m.sqfs"; else
  sqmem=$( { /usr/bin/time -f %M mksquashfs "$m" "$work/m.sqfs" -comp zstd -Xcompression-level 3 -b 131072 -quiet -no-progress >/dev/null; } 2>&1 | tail -1)
  fi
  t2=$(date +%s.%N)
  look0=$(date +%s.%N)
  "$hexz" cat "$work/m.hxz" d0500/file-0500.txt | cmp -s - "$m/d0500/file-0500.txt" || { echo "lookup returned other bytes" >&2; exit 1; }
  look1=$(date +%s.%N)
  tb=$(jq -r .table_bytes "$work/m.json")
  {
    echo "One million files (1,000 dirs x 1,000 files of 0-255 bytes), $(date -u +%F), load before: $load"
    echo
    echo "| | hexz pack (zstd-3, 128K) | mksquashfs (zstd-3, 128K) |"
    echo "|---|---:|---:|"
    echo "| peak RSS | $((mem / 1024)) MiB | $((sqmem / 1024)) MiB |"
    echo "| wall time | $(echo "$t1 - $t0" | bc -l | cut -c1-6) s | $(echo "$t2 - $t1" | bc -l | cut -c1-6) s |"
    echo "| archive size | $(stat -c %s "$work/m.hxz") | $(stat -c %s "$work/m.sqfs") |"
    echo "| file table stored size | $tb bytes | - |"
    echo "| hexz cat of one path (process start included) | $(echo "$look1 - $look0" | bc -l | cut -c1-6) s | |"
  } | tee "$work/../hexz-bench-million.md"
  exit 0
fi

# 100,000 files of 4-150 KiB (log-uniform sizes, mean about 40 KiB, so about 3.8 GiB), 1,000
# per directory, generated deterministically (a fixed seed): half log-like text, 30% binary
# records, 20% random bytes (already-compressed media). Size, pack time, peak memory, full
# extract and 1,000 random files by path, hexz against mksquashfs/unsquashfs (same codec and
# block size) and tar | zstd -3 -T0. SMALL_FILES=N generates N files instead.
small_section() {
  local s=$work/small n=${SMALL_FILES:-100000}
  echo "making $n files of 4-150 KiB..." >&2
  python3 - "$s" "$n" <<'PY'
import itertools, math, os, random, struct, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(11)
abc = "abcdefghijklmnopqrstuvwxyz"
vocab = ["".join(rng.choice(abc) for _ in range(rng.randint(2, 10))) for _ in range(5000)]
cum = list(itertools.accumulate(1.0 / (i + 1) for i in range(len(vocab))))
lines, t, total = [], 1_700_000_000, 0
while total < 24 << 20:
    t += rng.randint(0, 3)
    words = " ".join(rng.choices(vocab, cum_weights=cum, k=rng.randint(4, 16)))
    lvl = rng.choice(("INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"))
    lines.append(f"{t}.{rng.randint(0, 999999):06} {lvl} {rng.choice(vocab[:40])}: {words}\n")
    total += len(lines[-1])
text = "".join(lines).encode()
recs, v = [], 0.0
for i in range(24 << 20 >> 5):
    v += rng.gauss(0, 1)
    recs.append(struct.pack("<QIIfHHQ", i, rng.randint(0, 99), i * 7 % 1000, v,
                            rng.randint(0, 15), 0, rng.getrandbits(20)))
binary = b"".join(recs)
noise = rng.randbytes(16 << 20)
kinds = [(text, ".log", 50), (binary, ".bin", 30), (noise, ".jpg", 20)]
lo, hi = math.log(4 << 10), math.log(150 << 10)
for i in range(n):
    if i % 1000 == 0:
        os.makedirs(os.path.join(root, f"d{i // 1000:03}"))
    pool, ext, _ = rng.choices(kinds, [k[2] for k in kinds])[0]
    size = int(math.exp(rng.uniform(lo, hi)))
    at = rng.randrange(len(pool) - size)
    with open(os.path.join(root, f"d{i // 1000:03}", f"f{i:06}{ext}"), "wb") as fh:
        fh.write(pool[at:at + size])
PY
  # No warm-up run: the inputs were read once (warm cache), and each run takes a minute.
  local files bytes load warmup=0
  files=$(find "$s" -type f | wc -l)
  bytes=$(du -sb "$s" | cut -f1)
  tar -cf - -C "$s" . >/dev/null
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "pack..." >&2
  hf "$work/s-pack.json" \
    -p "rm -f $work/s.hxz $work/s.sqfs $work/s.tar.zst; sync" \
    -n "hexz pack zstd-3 128K" "$hexz pack $s -o $work/s.hxz --compression zstd --level 3 --block-size 128K" \
    -n "mksquashfs zstd-3 128K" "mksquashfs $s $work/s.sqfs -comp zstd -Xcompression-level 3 -b 131072 -quiet -no-progress" \
    -n "tar | zstd -3 -T0" "tar -cf - -C $s . | zstd -3 -T0 -q -o $work/s.tar.zst"
  local mem_hexz mem_sq
  mem_hexz=$(rm -f "$work/s.hxz"; peak "$hexz" pack "$s" -o "$work/s.hxz" --compression zstd --level 3 --block-size 128K)
  mem_sq=$(rm -f "$work/s.sqfs"; peak mksquashfs "$s" "$work/s.sqfs" -comp zstd -Xcompression-level 3 -b 131072 -quiet -no-progress)
  [ -f "$work/s.tar.zst" ] || tar -cf - -C "$s" . | zstd -3 -T0 -q -o "$work/s.tar.zst"
  echo "extract..." >&2
  hf "$work/s-extract.json" \
    -p "rm -rf $work/sx; sync" \
    -n "hexz extract" "$hexz extract $work/s.hxz -o $work/sx" \
    -n "unsquashfs" "unsquashfs -q -n -d $work/sx $work/s.sqfs" \
    -n "zstd -d | tar -x" "mkdir -p $work/sx && zstd -dc $work/s.tar.zst | tar -xf - -C $work/sx"
  rm -rf "$work/sx"
  (cd "$s" && find . -type f -printf '%P\n') | shuf -n 1000 --random-source=<(yes) >"$work/s-pick"
  # Both tools must return the source's bytes.
  while IFS= read -r p; do "$hexz" cat "$work/s.hxz" "$p"; done <"$work/s-pick" | cmp -s - <(cd "$s" && xargs -d '\n' cat -- <"$work/s-pick") \
    || { echo "hexz cat returned other bytes" >&2; exit 1; }
  echo "random reads..." >&2
  hf "$work/s-read.json" \
    -n "hexz cat x1000 (process per file)" "while IFS= read -r p; do $hexz cat $work/s.hxz \"\$p\"; done <$work/s-pick >/dev/null" \
    -n "unsquashfs -e x1000 (process per file)" "while IFS= read -r p; do unsquashfs -q -n -cat $work/s.sqfs \"\$p\"; done <$work/s-pick >/dev/null"
  med() { jq -r --arg n "$2" '.results[] | select(.command==$n) | .median' "$1"; }
  {
    echo "Small files: $files files of 4-150 KiB, $(numfmt --to=iec "$bytes"); runs: $runs; $(date -u +%F); load before: $load"
    echo
    echo "| tool | archive size | pack (median s) | peak RSS pack | full extract (median s) |"
    echo "|---|---:|---:|---:|---:|"
    echo "| hexz zstd-3 128K | $(stat -c %s "$work/s.hxz") | $(med "$work/s-pack.json" "hexz pack zstd-3 128K") | $((mem_hexz / 1024)) MiB | $(med "$work/s-extract.json" "hexz extract") |"
    echo "| mksquashfs zstd-3 128K | $(stat -c %s "$work/s.sqfs") | $(med "$work/s-pack.json" "mksquashfs zstd-3 128K") | $((mem_sq / 1024)) MiB | $(med "$work/s-extract.json" "unsquashfs") |"
    echo "| tar \\| zstd -3 -T0 | $(stat -c %s "$work/s.tar.zst") | $(med "$work/s-pack.json" "tar | zstd -3 -T0") | - | $(med "$work/s-extract.json" "zstd -d | tar -x") |"
    echo
    echo "| 1,000 random files by path, one process per file | median s |"
    echo "|---|---:|"
    echo "| hexz cat | $(med "$work/s-read.json" "hexz cat x1000 (process per file)") |"
    echo "| unsquashfs -cat | $(med "$work/s-read.json" "unsquashfs -e x1000 (process per file)") |"
    echo
    echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
  } | tee "$work/../hexz-bench-small.md"
}
if [ "$sections" = small ]; then
  small_section
  exit 0
fi

src=$work/src
mkdir -p "$src"
if [ -n "${TREE:-}" ]; then
  cp -a "$TREE/." "$src/"
else
  for d in /usr/share/doc /usr/include /usr/share/perl5; do
    [ -d "$d" ] && cp -a "$d" "$src/$(basename "$d")"
  done
fi
tar -cf - -C "$src" . >/dev/null
files=$(find "$src" -type f | wc -l)
bytes=$(du -sb "$src" | cut -f1)

load=$(cut -d' ' -f1-3 /proc/loadavg)

if has pack; then
echo "pack..." >&2
hf "$work/pack.json" \
  -p "rm -f $work/t.hxz $work/t.sqfs $work/t.tar.zst; sync" \
  -n "hexz pack zstd-3 128K" "$hexz pack $src -o $work/t.hxz --compression zstd --level 3 --block-size 128K" \
  -n "mksquashfs zstd-3 128K" "mksquashfs $src $work/t.sqfs -comp zstd -Xcompression-level 3 -b 131072 -quiet -no-progress" \
  -n "tar | zstd -3 -T0" "tar -cf - -C $src . | zstd -3 -T0 -q -o $work/t.tar.zst"
mem_hexz=$(rm -f "$work/t.hxz"; peak "$hexz" pack "$src" -o "$work/t.hxz" --compression zstd --level 3 --block-size 128K)
mem_sq=$(rm -f "$work/t.sqfs"; peak mksquashfs "$src" "$work/t.sqfs" -comp zstd -Xcompression-level 3 -b 131072 -quiet -no-progress)
else
  "$hexz" pack "$src" -o "$work/t.hxz" --compression zstd --level 3 --block-size 128K >/dev/null
  mksquashfs "$src" "$work/t.sqfs" -comp zstd -Xcompression-level 3 -b 131072 -quiet -no-progress >/dev/null
fi

if has extract; then
echo "extract..." >&2
hf "$work/extract.json" \
  -p "rm -rf $work/x; sync" \
  -n "hexz extract" "$hexz extract $work/t.hxz -o $work/x" \
  -n "unsquashfs" "unsquashfs -q -n -d $work/x $work/t.sqfs" \
  -n "zstd -d | tar -x" "mkdir -p $work/x && zstd -dc $work/t.tar.zst | tar -xf - -C $work/x"
fi

(cd "$src" && find . -type f -printf '%P\n') | shuf -n 1000 --random-source=<(yes) >"$work/pick"
if has read; then
echo "random reads..." >&2
hf "$work/read.json" \
  -n "hexz cat x1000 (process per file)" "while IFS= read -r p; do $hexz cat $work/t.hxz \"\$p\"; done <$work/pick >/dev/null" \
  -n "unsquashfs -e x1000 (process per file)" "while IFS= read -r p; do unsquashfs -q -n -cat $work/t.sqfs \"\$p\"; done <$work/pick >/dev/null"
fi

# Through the mount: each run on a fresh mount (cold FUSE dentry, attribute and page
# caches; the archive file itself stays in the host page cache, for both tools alike).
mp=$work/mnt
mkdir -p "$mp"
mount_hexz() { "$hexz" mount "$work/t.hxz" "$mp"; }
mount_sq() {
  squashfuse_ll "$work/t.sqfs" "$mp"
  for _ in $(seq 100); do mountpoint -q "$mp" && return; sleep 0.05; done
  echo "squashfuse_ll did not mount" >&2; exit 1
}
# hexz unmount waits for the mount's process to exit: after a bare fusermount3 -u, the
# exiting daemon could still tear down a mount made at the same path in the meantime.
umount_mp() {
  if grep -q "^hexz:[^ ]* $mp " /proc/mounts; then "$hexz" unmount "$mp"; else fusermount3 -u "$mp" 2>/dev/null || umount -l "$mp"; fi
  while mountpoint -q "$mp"; do sleep 0.05; done
}
trap 'mountpoint -q "$mp" && umount_mp; rm -rf "$work"' EXIT
# mtime CMD: median wall times (s) "hexz squashfuse" of CMD, each run in a fresh mount by
# each tool in turn (interleaved, so a change of machine load hits both alike), RUNS times.
mtime() {
  local cmd=$1 th=() ts=()
  for _ in $(seq "$runs"); do
    for tool in hexz sq; do
      "mount_$tool" >/dev/null
      local t0 t1
      t0=$(date +%s.%N)
      (cd "$mp" && bash -c "$cmd") >/dev/null
      t1=$(date +%s.%N)
      umount_mp >/dev/null
      if [ $tool = hexz ]; then th+=("$(echo "$t1 - $t0" | bc -l)"); else ts+=("$(echo "$t1 - $t0" | bc -l)"); fi
    done
  done
  med3() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)]}'; }
  echo "$(med3 "${th[@]}") $(med3 "${ts[@]}")"
}
if has mount; then
  echo "mount..." >&2
  # The mounts must read what was packed.
  sanity() {
    "mount_$1"
    (cd "$mp" && xargs -d '\n' cat -- <"$work/pick") | cmp -s - <(cd "$src" && xargs -d '\n' cat -- <"$work/pick") \
      || { echo "$1: reads through the mount differ from the source" >&2; umount_mp; exit 1; }
    umount_mp
  }
  sanity hexz
  sanity sq
  read -r rd_hexz rd_sq <<<"$(mtime "xargs -d '\n' cat -- <$work/pick")"
  read -r ls_hexz ls_sq <<<"$(mtime "ls -R .")"
  read -r find_hexz find_sq <<<"$(mtime "find .")"
fi

med() { jq -r --arg n "$2" '.results[] | select(.command==$n) | .median' "$1"; }
size() { stat -c %s "$1"; }
{
  echo "Tree: $files files, $(numfmt --to=iec "$bytes") ($([ -n "${TREE:-}" ] && echo "$TREE" || echo "/usr/share/doc + /usr/include + /usr/share/perl5")); runs: $runs; $(date -u +%F)"
  if has pack && has extract; then
  echo
  echo "| tool | archive size | pack (median s) | peak RSS pack | full extract (median s) |"
  echo "|---|---:|---:|---:|---:|"
  echo "| hexz zstd-3 128K | $(size "$work/t.hxz") | $(med "$work/pack.json" "hexz pack zstd-3 128K") | ${mem_hexz} KiB | $(med "$work/extract.json" "hexz extract") |"
  echo "| mksquashfs zstd-3 128K | $(size "$work/t.sqfs") | $(med "$work/pack.json" "mksquashfs zstd-3 128K") | ${mem_sq} KiB | $(med "$work/extract.json" "unsquashfs") |"
  echo "| tar \\| zstd -3 -T0 | $(size "$work/t.tar.zst") | $(med "$work/pack.json" "tar | zstd -3 -T0") | - | $(med "$work/extract.json" "zstd -d | tar -x") |"
  else
  echo
  echo "| archive (zstd-3, 128K) | size |"
  echo "|---|---:|"
  echo "| hexz | $(size "$work/t.hxz") |"
  echo "| mksquashfs | $(size "$work/t.sqfs") |"
  fi
  if has read; then
  echo
  echo "| 1,000 random files by path | median s |"
  echo "|---|---:|"
  echo "| hexz cat, one process per file | $(med "$work/read.json" "hexz cat x1000 (process per file)") |"
  echo "| unsquashfs -cat, one process per file | $(med "$work/read.json" "unsquashfs -e x1000 (process per file)") |"
  fi
  if has mount; then
    echo
    echo "Through the mount, fresh mount per run, median of $runs (load average before: $load):"
    echo
    echo "| through the mount | hexz mount | squashfuse_ll | hexz / squashfuse_ll |"
    echo "|---|---:|---:|---:|"
    fps() { echo "scale=0; 1000 / $1" | bc -l; }
    echo "| 1,000 random files by path (xargs cat), files/s | $(fps "$rd_hexz") ($rd_hexz s) | $(fps "$rd_sq") ($rd_sq s) | $(echo "scale=2; $rd_sq / $rd_hexz" | bc -l)x |"
    echo "| ls -R, s | $ls_hexz | $ls_sq | $(echo "scale=2; $ls_sq / $ls_hexz" | bc -l)x |"
    echo "| find, s | $find_hexz | $find_sq | $(echo "scale=2; $find_sq / $find_hexz" | bc -l)x |"
  fi
} | tee "$work/../hexz-bench-tree.md"
