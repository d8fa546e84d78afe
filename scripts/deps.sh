#!/usr/bin/env bash
# Installs what hexz's tests, quick start and benchmarks need on a fresh Debian machine.
# Idempotent: only missing tools are installed. Usage: scripts/deps.sh [test|bench]
set -euo pipefail
want=(mkfs.ext4:e2fsprogs fusermount3:fuse3 fio:fio qemu-img:qemu-utils)
if [ "${1:-test}" = bench ]; then
  want+=(lz4:lz4 zstd:zstd hyperfine:hyperfine qemu-img:qemu-utils casync:casync mksquashfs:squashfs-tools squashfuse_ll:squashfuse)
fi
missing=()
for w in "${want[@]}"; do
  cmd=${w%%:*}; pkg=${w##*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/sbin/$cmd" ] || [ -x "/usr/sbin/$cmd" ] || missing+=("$pkg")
done
if ! command -v cargo >/dev/null 2>&1; then
  echo "deps: cargo not found; install Rust (rustup) first" >&2
  exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
