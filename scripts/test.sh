#!/usr/bin/env bash
# The whole test suite (what `make test` and CI run): installs missing tools and servers, checks
# formatting and lints, runs every Rust test in release mode (unit, property, corruption,
# concurrency, real ext4, real nginx/SeaweedFS, FUSE and NBD, crash, stress), a short fuzz
# session per target, and the Python tests against a real `pip install` of the wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
scripts/deps.sh test
# Missing servers fail the tests instead of skipping them.
export HEXZ_REQUIRE_SERVERS=1
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets --locked -- -D warnings
# The core must also build without its optional features (no zstd, encryption, signing, http, s3).
cargo clippy --release -p hexz-core --no-default-features --locked -- -D warnings
cargo test --release --workspace --locked
if [ -x scripts/fuzz.sh ]; then FUZZ_SECONDS=${FUZZ_SECONDS:-10} scripts/fuzz.sh; fi
if [ -x scripts/test-py.sh ]; then HEXZ_BIN=target/release/hexz scripts/test-py.sh; fi
echo "test.sh: all passed"
