#!/usr/bin/env bash
# Builds hexz, makes a sample disk image (an ext4 file system of /usr/share/doc), packs it,
# shows it, verifies it, reads a range and extracts it again, comparing byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
scripts/deps.sh quick
cargo build --release --locked -p hexz-cli
hexz=target/release/hexz
work=${QUICKSTART_DIR:-target/quickstart}
mkdir -p "$work"
img=$work/sample.img
echo "== making $img: a 256 MiB ext4 image of /usr/share/doc"
rm -f "$img"
mkfs.ext4 -q -F -d /usr/share/doc "$img" 256M
echo "== hexz pack"
$hexz pack --disk "$img" -o "$work/sample.hxz" --compression zstd
echo "== hexz info"
$hexz info "$work/sample.hxz"
echo "== hexz verify"
$hexz verify "$work/sample.hxz"
echo "== hexz cat: the ext4 superblock magic (2 bytes at 1080) reads 53ef"
$hexz cat "$work/sample.hxz" --offset 1080 --length 2 | od -An -tx1
echo "== hexz extract and compare"
$hexz extract "$work/sample.hxz" -o "$work/restored.img"
cmp "$img" "$work/restored.img"
echo "restored image is identical; $(du -h "$work/restored.img" | cut -f1) allocated of $(du -h --apparent-size "$work/restored.img" | cut -f1) (sparse)"
