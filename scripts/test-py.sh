#!/usr/bin/env bash
# Python tests: builds the hexz wheel (release) with maturin, pip-installs it into a
# virtualenv kept outside the clone, and runs pytest on crates/hexz-py/tests against the
# installed package and the real hexz CLI.
#
# The virtualenv ($HEXZ_VENV, default /var/cache/hexz/venv) is reused when present; on a
# fresh machine it is created and maturin, pytest, numpy and torch (CPU use, from PyPI, about
# 5 GB) are installed once. HEXZ_NO_TORCH=1 skips torch (and its tests).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HEXZ_VENV:-/var/cache/hexz/venv}
if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
need=()
for m in maturin pytest numpy; do "$PY" -c "import $m" 2>/dev/null || need+=("$m"); done
if [ "${HEXZ_NO_TORCH:-0}" != 1 ]; then "$PY" -c "import torch" 2>/dev/null || need+=(torch); fi
if [ ${#need[@]} -gt 0 ]; then
  echo "test-py: installing ${need[*]} into $VENV" >&2
  "$PY" -m pip install -q "${need[@]}"
fi
cargo build --release --locked -q -p hexz-cli
export HEXZ_BIN="$PWD/target/release/hexz"
scripts/wheel.sh "$PY"
"$PY" -m pip install -q --force-reinstall --no-deps target/wheels/hexz-*.whl
# Run from the tests directory so `import hexz` is the installed package, not the source tree.
cd crates/hexz-py/tests
exec "$PY" -m pytest -q -p no:cacheprovider "$@"
