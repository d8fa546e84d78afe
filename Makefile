# Common tasks. `make test` is what CI runs (via .ci/run).
.PHONY: build test lint fmt bench quickstart clean wheel test-py bench-py

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
