#!/usr/bin/env bash
# Builds the hexz Python wheel (abi3, CPython 3.9+) into target/wheels/ with maturin.
# Usage: scripts/wheel.sh [PYTHON]  (a Python with maturin; default: the test virtualenv's,
# else maturin on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-${HEXZ_VENV:-/var/cache/hexz/venv}/bin/python}
rm -f target/wheels/hexz-*.whl
if [ -x "$PY" ] && "$PY" -c "import maturin" 2>/dev/null; then
  "$PY" -m maturin build --release --locked -q -m crates/hexz-py/pyproject.toml -o target/wheels
else
  maturin build --release --locked -q -m crates/hexz-py/pyproject.toml -o target/wheels
fi
ls target/wheels/hexz-*.whl
