#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/ for FUZZ_SECONDS each (default 600; CI uses 10).
#   scripts/fuzz.sh                 all targets, FUZZ_SECONDS each
#   scripts/fuzz.sh header codec_decode   only these targets
# Targets: every [[bin]] in fuzz/Cargo.toml — header, master_index, index_page, codec_decode,
# open_read, open_read_fixed, encrypted_open, thin_chain, signature, cdc_pack, file_table (tree
# archives' file table), nbd_proto (the NBD server driven by a client byte stream).
#
# Needs no cargo-fuzz and no nightly: it builds the targets itself with the flags cargo-fuzz
# would pass (`--cfg fuzzing`, SanitizerCoverage through `-Cpasses=sancov-module` and
# `-Cllvm-args`, all stable rustc options; libfuzzer-sys compiles libFuzzer with the system's
# C++ compiler), for an explicit --target so build scripts and proc macros stay uninstrumented.
# Debug assertions and overflow checks are on. FUZZ_SANITIZER=address (the default) adds
# AddressSanitizer, a nightly flag that stable rustc accepts with RUSTC_BOOTSTRAP=1;
# FUZZ_SANITIZER=none builds faster and runs faster (what CI uses: the code is safe Rust, so the
# panics, hangs, overflows and allocation bounds are what the short session looks for).
# FUZZ_OPT (default 3; CI uses 1 to build faster) sets the optimisation level.
#
# The corpus lives in fuzz/corpus/<target> (seeds committed; new finds stay in a scratch copy).
# Crashes land in fuzz/artifacts/<target>/ and fail the run; each one found is copied into
# fuzz/corpus/<target>/ as regress-* and is then replayed by `cargo test`
# (crates/hexz-core/tests/fuzz_corpus.rs; nbd_proto: crates/hexz-mount/tests/nbd_fuzz_corpus.rs).
# FUZZ_SEED=N makes the mutation sequence repeatable (the short CI session sets it, so a red
# CI is a reproducible find, not luck of the draw); unset, every run explores afresh.
# Prints a summary line per target (executions, coverage, corpus size) and writes it to
# fuzz/last-run.txt (or FUZZ_SUMMARY) for docs/RELIABILITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${FUZZ_SECONDS:-600}"
SANITIZER="${FUZZ_SANITIZER:-address}"
OPT="${FUZZ_OPT:-3}"
triple=$(rustc -vV | sed -n 's/^host: //p')
flags="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags+=" -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares"
flags+=" -Cdebug-assertions -Coverflow-checks -Copt-level=$OPT -Cdebuginfo=1"
case "$SANITIZER" in
    none) ;;
    address)
        export RUSTC_BOOTSTRAP=1
        flags+=" -Zsanitizer=address" ;;
    *) echo "fuzz.sh: FUZZ_SANITIZER must be none or address, not '$SANITIZER'" >&2; exit 2 ;;
esac
# A target dir per flavour, so switching between CI's and the long runs' builds rebuilds nothing.
target_dir="fuzz/target/$SANITIZER-O$OPT"

if [ ! -d fuzz/corpus/header ] || [ ! -d fuzz/corpus/file_table ]; then
    cargo run -q --release -p hexz-core --example fuzz_corpus -- fuzz/corpus
fi
if [ ! -d fuzz/corpus/nbd_proto ]; then
    cargo run -q --release -p hexz-mount --example nbd_corpus -- fuzz/corpus
fi
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(sed -n '/^\[\[bin\]\]/{n;s/^name *= *"\(.*\)"/\1/p}' fuzz/Cargo.toml)
fi
[ ${#targets[@]} -gt 0 ] || { echo "fuzz.sh: no targets found in fuzz/Cargo.toml" >&2; exit 2; }
t0=$(date +%s)
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
RUSTFLAGS="$flags" cargo build --manifest-path fuzz/Cargo.toml --locked --release \
    --target "$triple" --target-dir "$target_dir" "${bins[@]}"
echo "fuzz targets built in $(( $(date +%s) - t0 )) s ($SANITIZER, opt-level $OPT)" >&2
summary=${FUZZ_SUMMARY:-fuzz/last-run.txt}
: > "$summary"
failed=0
for t in "${targets[@]}"; do
    bin="$target_dir/$triple/release/$t"
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    # Work on a copy of the corpus so new finds don't dirty the committed seeds.
    work=$(mktemp -d)
    cp -r "fuzz/corpus/$t/." "$work/" 2>/dev/null || true
    log=$(mktemp)
    if "$bin" "$work" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=20 \
        -max_len=65536 -print_final_stats=1 ${FUZZ_SEED:+-seed=$FUZZ_SEED} \
        -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1; then
        status=ok
    else
        status=CRASH
        failed=1
        tail -40 "$log" >&2
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
    printf '%-16s %-5s %4ss %10s execs  cov %6s  corpus %5s\n' "$t" "$status" \
        "$SECONDS_PER_TARGET" "$execs" "$cov" "$(ls "$work" | wc -l)" | tee -a "$summary"
    rm -rf "$work" "$log"
done
exit $failed
