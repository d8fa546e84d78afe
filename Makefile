# Common tasks. `make test` is what CI runs (via .ci/run).
.PHONY: build test lint fmt bench bench-durable bench-instr bench-mount quickstart clean wheel test-py bench-py
.PHONY: fuzz fuzz-ci sweep crash stress bounds reliability

build:
	cargo build --release --workspace

test:
	scripts/test.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

bench:
	scripts/bench.sh

bench-durable:
	scripts/bench-durable.sh

# Instruction counts under callgrind (repeatable on a busy machine); INSTR_BASELINE=FILE compares.
bench-instr:
	scripts/bench-instr.sh

# The Python package: an abi3 wheel in target/wheels/, its pytest suite, its benchmarks.
wheel:
	scripts/wheel.sh

test-py:
	scripts/test-py.sh

bench-py:
	scripts/bench-py.sh

quickstart:
	scripts/quickstart.sh

clean:
	cargo clean

# Reliability harness (docs/RELIABILITY.md). The sampled parts run in `make test`.
# `make fuzz` runs every target (file_table and nbd_proto included); FUZZ_TARGETS="file_table
# nbd_proto" picks some.
fuzz:
	FUZZ_SECONDS=$${FUZZ_SECONDS:-600} scripts/fuzz.sh $(FUZZ_TARGETS)

fuzz-ci:
	FUZZ_SANITIZER=none FUZZ_OPT=1 FUZZ_SECONDS=10 FUZZ_SEED=1 scripts/fuzz.sh $(FUZZ_TARGETS)

sweep:
	HEXZ_SWEEP=full cargo test --release -p hexz-core --test sweep -- --nocapture
	HEXZ_SWEEP=full cargo test --release -p hexz-cli --test sweep_cli -- --nocapture

crash:
	HEXZ_CRASH=full cargo test --release -p hexz-cli --test crash -- --nocapture

stress:
	HEXZ_STRESS=full cargo test --release -p hexz-core --test stress -- --nocapture

bounds:
	cargo test --release -p hexz-core --test bounds -- --nocapture

reliability: sweep crash stress bounds fuzz

bench-mount:
	scripts/bench-mount.sh
