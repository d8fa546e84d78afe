#!/usr/bin/env bash
# The whole test suite: installs missing tools, checks formatting and lints, runs every test
# (unit, property, corruption, concurrency, real ext4 image, CLI, doctests) in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
scripts/deps.sh test
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets --locked -- -D warnings
# The core must also build without its optional features (no zstd, encryption, signing).
cargo clippy --release -p hexz-core --no-default-features --locked -- -D warnings
cargo test --release --workspace --locked
