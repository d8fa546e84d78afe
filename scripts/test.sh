#!/usr/bin/env bash
# The whole test suite (what `make test` and CI run): installs missing tools and servers, checks
# formatting and lints, runs every Rust test in release mode (unit, property, corruption,
# concurrency, real ext4, real nginx/SeaweedFS, FUSE and NBD, crash, stress), a short fuzz
# session per target, and the Python tests against a real `pip install` of the wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
export PATH="$PATH:/usr/sbin:/sbin"
scripts/deps.sh test
# Missing servers fail the tests instead of skipping them.
export HEXZ_REQUIRE_SERVERS=1
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets --locked -- -D warnings
# The core must also build without its optional features (no zstd, encryption, signing, http, s3).
cargo clippy --release -p hexz-core --no-default-features --locked -- -D warnings
cargo test --release --workspace --locked
# The Python suite always runs: the wheel is built and pip-installed into the virtualenv and
# every test that does not need torch runs (the API, errors, threads, fork/spawn/forkserver
# children). The hexz.torch tests (DataLoader workers) need torch, from PyPI, ~5 GB and ~7
# minutes to install on a fresh machine. HEXZ_TORCH picks:
#   1     install it when missing; its tests must run (HEXZ_REQUIRE_TORCH=1)
#   0     never install it; its tests run only if it is already importable
#   auto  (default) as 1 when torch is already in the virtualenv, or when this run has taken
#         at most 18 minutes so far (CI's budget is 40 minutes on 2 cores: the install (~7), the
#         wheel (~3), the Python tests (~2) and the fuzz session after them (~9: building the
#         instrumented targets, then 12 x 10 s) fit in the rest); otherwise as 0, saying so.
torch=${HEXZ_TORCH:-auto}
if [ "$torch" = auto ]; then
  venv=${HEXZ_VENV:-/var/cache/hexz/venv}
  used=$(( (SECONDS - start) / 60 ))
  if "$venv/bin/python" -c "import torch" >/dev/null 2>&1 || [ "$used" -le 18 ]; then
    torch=1
  else
    torch=0
    echo "test.sh: not installing torch (this run has taken $used min of CI's 40); the" \
      "hexz.torch tests are skipped (HEXZ_TORCH=1 runs them)" >&2
  fi
fi
py_start=$SECONDS
HEXZ_TORCH=$torch HEXZ_BIN=target/release/hexz scripts/test-py.sh
echo "test.sh: Python suite (torch: $torch) took $(( SECONDS - py_start )) s;" \
  "whole run $(( (SECONDS - start) / 60 )) min" >&2
# Last (after the Python suite, so its torch decision sees the time before this), a short
# fuzz session: every libFuzzer target for 10 s with a fixed seed (a red CI is a
# reproducible find). scripts/fuzz.sh builds the targets itself with stable rustc (no
# cargo-fuzz, no nightly); CI builds them without AddressSanitizer at opt-level 1, which
# builds in a few minutes. The committed corpus is also replayed by the regular tests.
# HEXZ_FUZZ=0 skips it (e.g. a quick local run).
if [ "${HEXZ_FUZZ:-1}" != 0 ]; then
  fuzz_start=$SECONDS
  FUZZ_SANITIZER=none FUZZ_OPT=${FUZZ_OPT:-1} FUZZ_SECONDS=${FUZZ_SECONDS:-10} \
    FUZZ_SEED=${FUZZ_SEED:-1} scripts/fuzz.sh
  echo "test.sh: fuzz session took $(( SECONDS - fuzz_start )) s" >&2
else
  echo "test.sh: HEXZ_FUZZ=0: skipping the short fuzz session" >&2
fi
echo "test.sh: all passed in $(( (SECONDS - start) / 60 )) min"
