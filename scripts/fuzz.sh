#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/ for FUZZ_SECONDS each (default 600; CI uses 10).
#   scripts/fuzz.sh                 all targets, FUZZ_SECONDS each
#   scripts/fuzz.sh header codec_decode   only these targets
# Targets (every [[bin]] in fuzz/Cargo.toml, listed by `cargo fuzz list`): header,
# master_index, index_page, codec_decode, open_read, open_read_fixed, encrypted_open,
# thin_chain, signature, cdc_pack, file_table (tree archives' file table), nbd_proto (the NBD
# server driven by a client byte stream).
# Works on the stable toolchain: cargo-fuzz wants nightly flags (-Zsanitizer,
# -Cpasses=sancov-module), which stable rustc accepts with RUSTC_BOOTSTRAP=1. Builds with
# AddressSanitizer unless FUZZ_SANITIZER=none (faster builds and runs).
# Installs cargo-fuzz (pinned, --locked) once if it is missing; reused afterwards.
# The corpus lives in fuzz/corpus/<target> (seeds committed; new finds are added there, not
# committed). Crashes land in fuzz/artifacts/<target>/ and fail the run; each one found is
# copied into fuzz/corpus/<target>/ as regress-* and is then replayed by `cargo test`
# (crates/hexz-core/tests/fuzz_corpus.rs; nbd_proto: crates/hexz-mount/tests/nbd_fuzz_corpus.rs).
# FUZZ_SEED=N makes the mutation sequence repeatable (the short CI session sets it, so a red
# CI is a reproducible find, not luck of the draw); unset, every run explores afresh.
# Prints a summary line per target (executions, corpus size) and writes it to
# fuzz/last-run.txt for docs/RELIABILITY.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${FUZZ_SECONDS:-600}"
SANITIZER="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1
if ! command -v cargo-fuzz >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
    echo "installing cargo-fuzz (once; a few minutes)..." >&2
    t0=$(date +%s)
    cargo install cargo-fuzz --version 0.13.2 --locked
    echo "cargo-fuzz installed in $(( $(date +%s) - t0 )) s" >&2
fi
export PATH="$HOME/.cargo/bin:$PATH"
if [ ! -d fuzz/corpus/header ] || [ ! -d fuzz/corpus/file_table ]; then
    cargo run -q -p hexz-core --example fuzz_corpus -- fuzz/corpus
fi
if [ ! -d fuzz/corpus/nbd_proto ]; then
    cargo run -q -p hexz-mount --example nbd_corpus -- fuzz/corpus
fi
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi
t0=$(date +%s)
cargo fuzz build --fuzz-dir fuzz -s "$SANITIZER" -O
echo "fuzz targets built in $(( $(date +%s) - t0 )) s" >&2
summary=fuzz/last-run.txt
: > "$summary"
failed=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    # Work on a copy of the corpus so new finds don't dirty the committed seeds.
    work=$(mktemp -d)
    cp -r "fuzz/corpus/$t/." "$work/" 2>/dev/null || true
    log=$(mktemp)
    if cargo fuzz run --fuzz-dir fuzz -s "$SANITIZER" -O "$t" "$work" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=20 \
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
