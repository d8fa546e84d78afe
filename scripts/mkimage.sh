#!/usr/bin/env bash
# Builds the benchmark input: an ext4 image of real system directories (libraries, binaries,
# headers, docs). Usage: scripts/mkimage.sh OUT.img [SIZE]   (default 2G; ~1.6 GB of files)
set -euo pipefail
out=$1; size=${2:-2G}
export PATH="$PATH:/usr/sbin:/sbin"
[ -f "$out" ] && { echo "mkimage: $out exists" >&2; exit 0; }
stage=$(mktemp -d "$(dirname "$out")/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
for d in /usr/lib/x86_64-linux-gnu /usr/lib/llvm-14 /usr/lib/gcc /usr/lib/python3.11 /usr/bin \
         /usr/include /usr/share/doc /usr/share/man; do
  [ -d "$d" ] && mkdir -p "$stage$(dirname "$d")" && cp -a "$d" "$stage$(dirname "$d")/" 2>/dev/null || true
done
echo "mkimage: $(du -sh "$stage" | cut -f1) of files -> $out ($size ext4)" >&2
mkfs.ext4 -q -F -d "$stage" "$out" "$size"
