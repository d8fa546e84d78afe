#!/usr/bin/env bash
# Instruction-count benchmark (issue 12; docs/BENCHMARKS.md, "Instruction counts").
#
# Counts the instructions of fixed workloads under `valgrind --tool=callgrind`: repeatable
# for the same binary and input whatever else the machine is doing, so a regression shows on
# a noisy shared machine where wall-clock times move by 30%. Workloads (crates/hexz-core/
# examples/instrbench.rs, one thread per pool; input: INSTR_MIB MiB from a fixed generator):
#   pack lz4 64K, pack zstd-3 64K, pack zstd-3 CDC, full read of the lz4 and zstd archives,
#   INSTR_RANDOM uncached 4 KiB random reads of the lz4 archive
# and, on the same input in the same run, the reference tools `lz4 -1`, `lz4 -d`, `zstd -3`,
# `zstd -d` (single-threaded), counted the same way. Wall-clock medians (RUNS, default 3) of
# the same commands outside valgrind are printed beside the counts.
#
#   scripts/bench-instr.sh                      prints the table, saves bench-data/instr.tsv
#   INSTR_BIN=path/to/instrbench ...            counts that build instead of building one
#   INSTR_BASELINE=old.tsv scripts/bench-instr.sh   also compares with a saved run and fails
#                                                   when a hexz count grew by more than
#                                                   INSTR_TOLERANCE percent (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh bench >/dev/null
MIB=${INSTR_MIB:-64}
RANDOM_READS=${INSTR_RANDOM:-2000}
RUNS=${RUNS:-3}
TOL=${INSTR_TOLERANCE:-2}
dir=${BENCH_DIR:-/var/tmp/hexz-bench-instr}
out=${INSTR_OUT:-bench-data/instr.tsv}
mkdir -p "$dir" "$(dirname "$out")"
if [ -n "${INSTR_BIN:-}" ]; then
  bin=$INSTR_BIN  # e.g. an older build, to compare two commits
else
  cargo build -q --release --locked -p hexz-core --example instrbench
  bin=target/release/examples/instrbench
fi
input="$dir/input-$MIB.bin"
[ -s "$input" ] || "$bin" gen "$input" "$MIB"
export HEXZ_PASSWORD=  # never prompt

# count NAME CMD...: instructions of CMD under callgrind (all threads, children not traced).
count() {
  local log
  log=$(mktemp)
  valgrind --tool=callgrind --fair-sched=yes --callgrind-out-file=/dev/null "${@:2}" \
    >/dev/null 2>"$log" </dev/null || { cat "$log" >&2; rm -f "$log"; return 1; }
  grep -o 'Collected : [0-9]*' "$log" | grep -o '[0-9]*$'
  rm -f "$log"
}
# wall CMD...: median wall-clock seconds of RUNS runs.
wall() {
  local t=()
  for _ in $(seq "$RUNS"); do
    local s e
    s=$(date +%s.%N)
    "$@" >/dev/null 2>&1 </dev/null
    e=$(date +%s.%N)
    t+=("$(echo "$e - $s" | bc)")
  done
  printf '%s\n' "${t[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p"
}

lz4a="$dir/a-lz4.hxz"; zsta="$dir/a-zstd.hxz"; cdca="$dir/a-cdc.hxz"
rm -f "$lz4a" "$zsta" "$cdca"
rows=()
add() { # name reference? cmd...
  local name=$1; shift
  local n w
  n=$(count "$name" "$@")
  w=$(wall "$@")
  rows+=("$name	$n	$w")
  printf '%-28s %16s instr  %8.2f instr/byte  %7.3f s\n' "$name" "$n" \
    "$(echo "$n / ($MIB * 1048576)" | bc -l)" "$w" >&2
}
echo "bench-instr: input $MIB MiB ($input), $RANDOM_READS random reads, wall medians of $RUNS" >&2
add "hexz pack lz4"      "$bin" pack "$input" "$lz4a" lz4
add "lz4 -1"             lz4 -1 -f -q "$input" "$dir/ref.lz4"
add "hexz pack zstd-3"   "$bin" pack "$input" "$zsta" zstd
add "zstd -3 -T1"        zstd -3 -T1 -f -q "$input" -o "$dir/ref.zst"
add "hexz pack zstd-3 cdc" "$bin" pack "$input" "$cdca" cdc
add "hexz read lz4"      "$bin" read "$lz4a"
add "lz4 -d"             lz4 -d -f -q "$dir/ref.lz4" /dev/null
add "hexz read zstd-3"   "$bin" read "$zsta"
add "zstd -d"            zstd -d -f -q "$dir/ref.zst" -o /dev/null
add "hexz random 4K lz4" "$bin" random "$lz4a" "$RANDOM_READS"

get() { printf '%s\n' "${rows[@]}" | awk -F'\t' -v n="$1" '$1 == n { print $2 }'; }
ratio() { echo "scale=2; $(get "$1") / $(get "$2")" | bc; }
{
  echo "| workload ($MIB MiB fixed input) | instructions | per input byte | wall (median of $RUNS) |"
  echo "|---|---:|---:|---:|"
  for r in "${rows[@]}"; do
    IFS=$'\t' read -r name n w <<<"$r"
    printf '| %s | %s | %.2f | %.3f s |\n' "$name" "$(printf "%'d" "$n")" \
      "$(echo "$n / ($MIB * 1048576)" | bc -l)" "$w"
  done
  echo
  echo "| ratio of instructions | |"
  echo "|---|---:|"
  echo "| hexz pack lz4 / lz4 -1 | $(ratio 'hexz pack lz4' 'lz4 -1') |"
  echo "| hexz pack zstd-3 / zstd -3 -T1 | $(ratio 'hexz pack zstd-3' 'zstd -3 -T1') |"
  echo "| hexz read lz4 / lz4 -d | $(ratio 'hexz read lz4' 'lz4 -d') |"
  echo "| hexz read zstd-3 / zstd -d | $(ratio 'hexz read zstd-3' 'zstd -d') |"
  echo "| per random 4 KiB read | $(( $(get 'hexz random 4K lz4') / RANDOM_READS )) |"
} | tee "$dir/table.md"
printf '%s\n' "${rows[@]}" >"$out"
echo "bench-instr: counts saved to $out" >&2

if [ -n "${INSTR_BASELINE:-}" ]; then
  bad=0
  while IFS=$'\t' read -r name old _; do
    new=$(get "$name")
    [ -n "$new" ] || continue
    pct=$(echo "scale=2; ($new - $old) * 100 / $old" | bc)
    printf '%-28s %16s -> %16s  %+6.2f%%\n' "$name" "$old" "$new" "$pct" >&2
    case "$name" in
      hexz*) if [ "$(echo "$pct > $TOL" | bc)" = 1 ]; then bad=1; fi ;;
    esac
  done <"$INSTR_BASELINE"
  [ "$bad" = 0 ] || { echo "bench-instr: a hexz count grew by more than $TOL%" >&2; exit 1; }
fi
