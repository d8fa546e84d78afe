# Common tasks. `make test` is what CI runs (via .ci/run).
.PHONY: build test lint fmt bench quickstart clean

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

quickstart:
	scripts/quickstart.sh

clean:
	cargo clean
