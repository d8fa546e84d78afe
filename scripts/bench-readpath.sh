#!/usr/bin/env bash
# Read-path benchmark: round trips and time of reads through a backend that sleeps LATENCY_MS
# (default 20 ms) per call, the way a remote archive costs a round trip per request.
#
# Data: a 256 MiB tar of /usr (system files: text, binaries, some already compressed),
# packed with default settings (LZ4, 64 KiB blocks; 4 index pages of 1024 blocks). Runs the
# `readpath_bench` example (medians of RUNS runs, default 5): open, a cold 8 MiB read against
# the previous read path (one call per index page and per block, same run), 8 threads on one
# cold block, and a whole-stream sequential read with read-ahead.
#
# Usage: scripts/bench-readpath.sh   (LATENCY_MS=20 RUNS=5; writes bench-data/readpath.json)
set -euo pipefail
cd "$(dirname "$0")/.."
LATENCY_MS=${LATENCY_MS:-20}
RUNS=${RUNS:-5}
W=bench-data/readpath
mkdir -p "$W"
cargo build --release -q -p hexz-cli -p hexz-core --example readpath_bench
hexz=target/release/hexz
if [ ! -s "$W/usr.tar" ]; then
  tar -cf - -C / usr 2>/dev/null | head -c $((256 << 20)) > "$W/usr.tar.tmp" || true
  mv "$W/usr.tar.tmp" "$W/usr.tar"
fi
if [ ! -s "$W/usr.hxz" ]; then
  "$hexz" pack --disk "$W/usr.tar" -o "$W/usr.hxz" >/dev/null 2>&1
fi
target/release/examples/readpath_bench "$W/usr.hxz" "$LATENCY_MS" "$RUNS" | tee bench-data/readpath.json
