#!/usr/bin/env bash
# File-tree benchmarks for docs/BENCHMARKS.md ("File trees"): hexz tree archives against
# mksquashfs/unsquashfs (same codec and block size) and tar | zstd, in the same run, on the
# same trees: size, pack time, peak memory, full extract time, and reading 1,000 random
# files by path in one process.
#
#   scripts/bench-tree.sh                 # /usr/share/doc + /usr/include + /usr/share/perl5
#   TREE=/some/dir scripts/bench-tree.sh  # another tree
#   RUNS=5 scripts/bench-tree.sh          # runs per timed command (default 3)
#
# Archives and extracted trees go to /var/tmp (a real disk); inputs are read once first so
# every tool starts from a warm page cache.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
for t in mksquashfs unsquashfs zstd hyperfine; do
  command -v "$t" >/dev/null || { echo "missing $t (scripts/deps.sh bench)" >&2; exit 1; }
done
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null
cargo build --release --locked -p hexz-cli >/dev/null
hexz=$PWD/target/release/hexz
runs=${RUNS:-3}
work=$(mktemp -d /var/tmp/hexz-bench-tree.XXXXXX)
trap 'rm -rf "$work"' EXIT

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

hf() { hyperfine --style none --runs "$runs" --warmup 1 --export-json "$@" >/dev/null; }
peak() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }

echo "pack..." >&2
hf "$work/pack.json" \
  -p "rm -f $work/t.hxz $work/t.sqfs $work/t.tar.zst" \
  -n "hexz pack zstd-3 128K" "$hexz pack $src -o $work/t.hxz --compression zstd --level 3 --block-size 128K" \
  -n "mksquashfs zstd-3 128K" "mksquashfs $src $work/t.sqfs -comp zstd -Xcompression-level 3 -b 131072 -quiet -no-progress" \
  -n "tar | zstd -3 -T0" "tar -cf - -C $src . | zstd -3 -T0 -q -o $work/t.tar.zst"
mem_hexz=$(rm -f "$work/t.hxz"; peak "$hexz" pack "$src" -o "$work/t.hxz" --compression zstd --level 3 --block-size 128K)
mem_sq=$(rm -f "$work/t.sqfs"; peak mksquashfs "$src" "$work/t.sqfs" -comp zstd -Xcompression-level 3 -b 131072 -quiet -no-progress)

echo "extract..." >&2
hf "$work/extract.json" \
  -p "rm -rf $work/x" \
  -n "hexz extract" "$hexz extract $work/t.hxz -o $work/x" \
  -n "unsquashfs" "unsquashfs -q -n -d $work/x $work/t.sqfs" \
  -n "zstd -d | tar -x" "mkdir -p $work/x && zstd -dc $work/t.tar.zst | tar -xf - -C $work/x"

echo "random reads..." >&2
(cd "$src" && find . -type f -printf '%P\n') | shuf -n 1000 --random-source=<(yes) >"$work/pick"
hf "$work/read.json" \
  -n "hexz cat x1000 (process per file)" "while IFS= read -r p; do $hexz cat $work/t.hxz \"\$p\"; done <$work/pick >/dev/null" \
  -n "unsquashfs -e x1000 (process per file)" "while IFS= read -r p; do unsquashfs -q -n -cat $work/t.sqfs \"\$p\"; done <$work/pick >/dev/null"

med() { jq -r --arg n "$2" '.results[] | select(.command==$n) | .median' "$1"; }
size() { stat -c %s "$1"; }
{
  echo "Tree: $files files, $(numfmt --to=iec "$bytes") ($([ -n "${TREE:-}" ] && echo "$TREE" || echo "/usr/share/doc + /usr/include + /usr/share/perl5")); runs: $runs; $(date -u +%F)"
  echo
  echo "| tool | archive size | pack (median s) | peak RSS pack | full extract (median s) |"
  echo "|---|---:|---:|---:|---:|"
  echo "| hexz zstd-3 128K | $(size "$work/t.hxz") | $(med "$work/pack.json" "hexz pack zstd-3 128K") | ${mem_hexz} KiB | $(med "$work/extract.json" "hexz extract") |"
  echo "| mksquashfs zstd-3 128K | $(size "$work/t.sqfs") | $(med "$work/pack.json" "mksquashfs zstd-3 128K") | ${mem_sq} KiB | $(med "$work/extract.json" "unsquashfs") |"
  echo "| tar \\| zstd -3 -T0 | $(size "$work/t.tar.zst") | $(med "$work/pack.json" "tar | zstd -3 -T0") | - | $(med "$work/extract.json" "zstd -d | tar -x") |"
  echo
  echo "| 1,000 random files by path | median s |"
  echo "|---|---:|"
  echo "| hexz cat, one process per file | $(med "$work/read.json" "hexz cat x1000 (process per file)") |"
  echo "| unsquashfs -cat, one process per file | $(med "$work/read.json" "unsquashfs -e x1000 (process per file)") |"
} | tee "$work/../hexz-bench-tree.md"
